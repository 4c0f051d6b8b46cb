"""The checks `pipelines.run` makes on a command line before any stage runs (no components
import: `pipelines.run` passes what they need)."""
import tensorflow as tf

from magvit import remote
from magvit.configs.evaluation import check_counts, real_split
from magvit.metrics import i3d, i3d_weights
from magvit.tokenizer.train_step import spatial_dims
from pipelines.datasets.common import split_names


class UsageError(ValueError):
    """A bad command line: says which flag and what was expected."""


def check_image_tokenizer(config, image_tokenizer: bool, on_kubeflow: bool) -> None:
    """`--image_tokenizer` and the 2D-only fields: what the two tokenizer stages can run.

    The image trainer reads the image folder: on Kubeflow in its own container (the path must be
    remote), else on this machine (the folder must exist; a Dataflow runner changes nothing,
    the trainers are no Beam stage)."""
    model, folder = config.tokenizer.model, config.tokenizer.training.image_folder
    if spatial_dims(config.tokenizer) != 3:
        raise UsageError(f"--config={config.name}: a 2D image-tokenizer setting, but the pipeline "
                         "trains a video tokenizer; give the video setting and --image_tokenizer "
                         "(which adds the image stage with the `<setting>_image` config)")
    if not image_tokenizer:
        if folder:
            raise UsageError(f"--config.tokenizer.training.image_folder={folder}: trains the 2D "
                             "image tokenizer, a stage that only --image_tokenizer adds")
        return
    if model.init_from_2d:
        raise UsageError(f"--config.tokenizer.model.init_from_2d={model.init_from_2d} and "
                         "--image_tokenizer both give the video tokenizer its 2D start: keep one")
    if folder and on_kubeflow and not remote.is_remote(folder):
        raise UsageError(f"--config.tokenizer.training.image_folder={folder}: a local path, but "
                         "with --orchestrator=kubeflow the steps run on other machines, which "
                         "cannot see this one's files; give a gs:// path")
    if folder and not on_kubeflow and not tf.io.gfile.isdir(folder):
        raise UsageError(f"--config.tokenizer.training.image_folder={folder}: no such folder")


def check_dataset(dataset, train_split: str, eval_split: str) -> None:
    """Before any stage runs: the split names are folder names and the data stage writes the
    split the trainers read."""
    try:
        splits = split_names(dataset)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if train_split not in splits:
        raise UsageError(
            f"dataset {dataset.name!r} writes split(s) {', '.join(map(repr, splits))}, but the "
            f"trainers read split {train_split!r}: pass --config.dataset.split="
            f"{train_split},{eval_split} (for a folder: the "
            f"sub-folders <root>/{train_split}, <root>/"
            f"{eval_split})")


def check_eval(config, check_paths: bool) -> None:
    """The Evaluator's FVD needs I3D weights and a split the data stage writes: fail up front."""
    weights = config.eval.i3d_weights
    if not weights and not config.eval.allow_random_i3d:
        try:
            i3d_weights.packaged_checkpoint()
        except i3d.I3DWeightsError as e:
            raise UsageError(f"--config.eval.i3d_weights='' (the default weights): {e}") from e
    if weights and check_paths:
        try:
            if not weights.endswith(".npz"):
                i3d.checkpoint_prefix(weights)
            elif not tf.io.gfile.exists(weights):
                raise i3d.I3DWeightsError(f"I3D weights {weights!r}: no such .npz file")
        except i3d.I3DWeightsError as e:
            raise UsageError(f"--config.eval.i3d_weights: {e}") from e
    try:
        real_split(config.eval.split, split_names(config.dataset))
        check_counts(config.eval)
    except ValueError as e:
        raise UsageError(str(e)) from e
