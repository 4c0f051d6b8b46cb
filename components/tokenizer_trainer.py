"""TokenizerTrainer: trains the 3D-VQ (`magvit.train_tokenizer`) on the clip Examples.

Outputs the Model artifact (the training work directory: orbax checkpoints plus the run's
config.json, what `magvit.tokenizer.api.Tokenizer.load` reads; its `checkpoint_id` is a custom
property) and a ModelEvaluation with the reconstruction metrics on the `test` split, when the
clips have one (`metrics.json`, and each number as a custom property).

The optional image-tokenizer stage (`pipelines.run --image_tokenizer`) is this component again,
with id `ImageTokenizerTrainer` and the `<setting>_image` config (`image_tokenizer_config`): it
trains the 2D tokenizer on random frames of the clips, or on the images of
`tokenizer.training.image_folder` (then its held-out images are the eval set). Its Model feeds
the video trainer's `image_tokenizer` input, which the video tokenizer then inflates (generator,
EMA and discriminator: `tokenizer.model.init_from_2d` = that artifact's URI).
"""
import json
import os

import ml_collections
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components import artifacts, config_param, custom_job, progress, resources
from magvit import checkpoints, remote, train_utils
from magvit.configs.settings import IMAGE_SUFFIX
from magvit.tokenizer import inflation
from magvit.tokenizer.api import Tokenizer
from magvit.tokenizer.train_step import spatial_dims
from magvit.train_tokenizer import EVAL_METRICS_FILE, train

SECTIONS = ("tokenizer",)
TRAIN_SPLIT, EVAL_SPLIT = "train", "test"
IMAGE_STAGE_ID = "ImageTokenizerTrainer"
MODULE = "magvit.train_tokenizer"


def image_tokenizer_config(config: ml_collections.ConfigDict,
                           num_train_steps: int = 0) -> ml_collections.ConfigDict:
    """The image stage's config: `config` as its `<setting>_image` setting (the 2D tokenizer,
    `--config.*` overrides kept), trained `num_train_steps` steps (0: as many as the video)."""
    image = ml_collections.ConfigDict(config.to_dict())
    image.name = config.name + IMAGE_SUFFIX
    image.tokenizer.model.spatial_dims = 2
    image.tokenizer.model.init_from_2d = ""
    if num_train_steps:
        image.tokenizer.training.num_train_steps = int(num_train_steps)
    return image


def video_tokenizer_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The video stage's config: `image_folder` belongs to the image stage only."""
    video = ml_collections.ConfigDict(config.to_dict())
    video.tokenizer.training.image_folder = ""
    return video


def checkpoint_id(workdir: str) -> str:
    """Id of the trained tokenizer's EMA parameters (a 2D one cannot load as a Tokenizer)."""
    if spatial_dims(checkpoints.load_config(workdir).tokenizer) == 2:
        return train_utils.tree_hash(inflation.load_2d_state(workdir)[1])
    return Tokenizer.load(workdir).checkpoint_id


def cli_args(config: ml_collections.ConfigDict, train_pattern: str | None, workdir: str,
             eval_pattern: str | None) -> list[str]:
    """`python -m magvit.train_tokenizer` flags for the same training as `train(config,
    train_pattern, workdir, eval_pattern)` (writes the config JSON under `workdir`)."""
    return [custom_job.config_flag(config, workdir), f"--workdir={workdir}",
            *([f"--data={train_pattern}"] if train_pattern else []),
            *([f"--eval_data={eval_pattern}"] if eval_pattern else [])]


def train_on_custom_job(pools: resources.TrainerPools, stage: str, config, train_pattern,
                        workdir: str, eval_pattern) -> dict:
    """Trains on the CustomJob's replicas; returns the metrics the run left in `workdir` (the
    step and, with an eval set, the eval metrics; the train metrics are in its TensorBoard)."""
    custom_job.run_trainer(pools, stage, MODULE,
                           cli_args(config, train_pattern, workdir, eval_pattern), workdir)
    path = os.path.join(workdir, EVAL_METRICS_FILE)
    if eval_pattern or config.tokenizer.training.get("image_folder"):
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                found = json.load(f)
            return {"step": found.pop("step"), **{f"eval_{k}": v for k, v in found.items()}}
    ckpt = checkpoints.Checkpointer(workdir)
    try:
        return {"step": ckpt.latest_step()}
    finally:
        ckpt.close()


@component
def TokenizerTrainer(clips: InputArtifact[standard_artifacts.Examples],
                     model: OutputArtifact[standard_artifacts.Model],
                     evaluation: OutputArtifact[standard_artifacts.ModelEvaluation],
                     config: Parameter[str],
                     image_tokenizer: InputArtifact[standard_artifacts.Model] = None,
                     trainer_pools: Parameter[str] = ""):
    """Trains on the `train` split, evaluates on `test`; `config` holds the tokenizer section.
    `image_tokenizer`: a 2D tokenizer's Model to inflate (the image stage's output);
    `trainer_pools`: a `resources.TrainerPools` JSON: train on a multi-host CustomJob."""
    run_config = config_param.loads(config)
    if image_tokenizer is not None:
        run_config.tokenizer.model.init_from_2d = image_tokenizer.uri
        model.set_string_custom_property("init_from_2d", image_tokenizer.uri)
    steps = run_config.tokenizer.training.num_train_steps
    if run_config.tokenizer.training.get("image_folder"):
        train_pattern = eval_pattern = None     # the folder's images (and held-out images)
    else:
        splits = artifacts.split_names(clips)
        train_pattern = artifacts.split_pattern(clips, TRAIN_SPLIT)
        eval_pattern = artifacts.split_pattern(clips, EVAL_SPLIT) if EVAL_SPLIT in splits else None
    what = "the 2D image tokenizer" if spatial_dims(run_config.tokenizer) == 2 else "the 3D-VQ"
    stage = IMAGE_STAGE_ID if spatial_dims(run_config.tokenizer) == 2 else "TokenizerTrainer"
    pools = resources.TrainerPools.from_json(trainer_pools)
    where = f" on a {pools.replicas}-replica Vertex AI CustomJob" if pools else ""
    with progress.stage(stage, f"training {what} for {steps} steps{where}"):
        if pools:
            metrics = train_on_custom_job(pools, stage, run_config, train_pattern, model.uri,
                                          eval_pattern)
        else:
            metrics = train(run_config, train_pattern, model.uri, eval_pattern=eval_pattern)
    model.set_string_custom_property("checkpoint_id", checkpoint_id(model.uri))
    remote.write_text(os.path.join(evaluation.uri, "metrics.json"),
                      json.dumps(metrics, indent=2, sort_keys=True))
    artifacts.set_numbers(evaluation, {k: v for k, v in metrics.items() if k.startswith("eval_")}
                          or metrics)
