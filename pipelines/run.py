"""Runs MAGVIT as one TFX pipeline, from raw videos to trained models and their metrics.

    python -m pipelines.run --dataset=demo --config=tiny --pipeline_root=runs/demo

`--orchestrator=local` runs the stages here with LocalDagRunner and a SQLite MLMD store under the
pipeline root (a second run with the same inputs and config is served from cache) and ends with a
summary; `--orchestrator=kubeflow` compiles the same pipeline to the KFP v2 JSON that Kubeflow
Pipelines and Vertex AI Pipelines run, in the container image given by `--image` (Dockerfile).

Beam pipeline options (`--runner`, `--direct_num_workers`, `--project`, `--region`,
`--temp_location`, `--setup_file`...) pass through to every Beam stage (without `--runner`: the
in-process FnApiRunner, see pipelines/beam_options.py); any other unknown flag is an error. Every hyper-parameter comes from `--config` (`--config.key=value` overrides one field).
"""
import dataclasses
import os
import sys

# Before TensorFlow loads: keep its C++ start-up notices (CUDA probing, oneDNN) off the console.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # pylint: disable=wrong-import-position
import ml_collections
from ml_collections import config_flags as mlc_config_flags
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline

from components import (config_param, evaluator, pretokenizer, summary, tokenizer_trainer,
                        transformer_trainer, video_example_gen)
from magvit.configs import NAMES
from magvit.configs.dataset import DATASET_NAMES, dataset_config
from magvit.configs.evaluation import check_counts, real_split
from magvit.configs.flags import config_path, normalize_argv
from magvit.metrics import i3d
from pipelines.beam_options import BEAM_HELP, split_beam_args  # noqa: F401 (re-exported)
from pipelines.datasets.common import split_names

HELP_FLAGS = ("-h", "-help", "--help", "--helpshort", "--helpfull")
DEFAULT_CONFIG = "tiny"
DEFAULT_IMAGE = "magvit:latest"
METADATA_FILE = "metadata.sqlite"


class UsageError(ValueError):
    """A bad command line: says which flag and what was expected."""


@dataclasses.dataclass
class RunArgs:
    config: ml_collections.ConfigDict
    pipeline_root: str
    orchestrator: str
    pipeline_name: str
    image: str
    kubeflow_output: str
    enable_cache: bool
    beam_args: list[str]


def _flag_values(argv: list[str]) -> flags.FlagValues:
    """A fresh FlagValues with every flag of this CLI; `argv` feeds the --config.key overrides."""
    fv = flags.FlagValues()
    mlc_config_flags.DEFINE_config_file(
        "config", default=config_path(DEFAULT_CONFIG), flag_values=fv, lock_config=True,
        sys_argv=argv,
        help_string=f"A setting name ({', '.join(NAMES)}) or a config file `path.py[:arg]`; "
                    "override any field with --config.key=value.")
    flags.DEFINE_enum(
        "dataset", None, DATASET_NAMES,
        "Dataset to read; default: the config's. Another dataset than the config's replaces the "
        "config's dataset section with that dataset's defaults at the config's clip shape.",
        flag_values=fv)
    flags.DEFINE_string(
        "data_root", None, "Where the dataset lies in its native layout (sets "
        "config.dataset.root). Required for every dataset but `demo`, which is generated.",
        flag_values=fv)
    flags.DEFINE_string(
        "pipeline_root", None, "Required. Folder (or gs:// path) for the pipeline's artifacts; "
        f"with --orchestrator=local also its MLMD store ({METADATA_FILE}).", flag_values=fv)
    flags.DEFINE_enum(
        "orchestrator", "local", ["local", "kubeflow"], "local: run here with LocalDagRunner. "
        "kubeflow: write the KFP v2 pipeline JSON for Kubeflow Pipelines / Vertex AI.",
        flag_values=fv)
    flags.DEFINE_string("pipeline_name", None, "Default: magvit-<config name>.", flag_values=fv)
    flags.DEFINE_string("image", DEFAULT_IMAGE, "Container image the Kubeflow pipeline's steps "
                        "run in (built by the Dockerfile).", flag_values=fv)
    flags.DEFINE_string("kubeflow_output", None, "Where --orchestrator=kubeflow writes the "
                        "pipeline JSON; default: <pipeline_name>.json here.", flag_values=fv)
    flags.DEFINE_bool("enable_cache", True, "Reuse the outputs of stages whose inputs and "
                      "config did not change.", flag_values=fv)
    return fv


def usage() -> str:
    return (__doc__ + "\nFlags:\n" + _flag_values(["run"]).get_help()
            + f"\n\n{BEAM_HELP}")


def parse_args(argv: list[str]) -> RunArgs:
    """Parses the command line (without the program name); raises UsageError on a bad one."""
    ours, beam_args = split_beam_args(normalize_argv(list(argv), default=DEFAULT_CONFIG))
    _check_config_file(ours)
    argv = ["pipelines.run"] + ours
    fv = _flag_values(argv)
    try:
        positional = fv(argv)[1:]
        config = ml_collections.ConfigDict(fv.config.to_dict())  # an unlocked copy
    except (KeyError, AttributeError) as e:  # ml_collections: a field the config lacks
        overrides = [a for a in ours if a.startswith("--config.")]
        raise UsageError(f"the config has no field {str(e).strip(chr(34))} "
                         f"(overrides: {' '.join(overrides)})") from e
    except (flags.Error, OSError, ValueError, TypeError) as e:
        raise UsageError(str(e).strip()) from e
    if positional:
        raise UsageError(f"unexpected argument(s): {' '.join(positional)}")
    if not fv.pipeline_root:
        raise UsageError("--pipeline_root is required: the folder (or gs:// path) for the "
                         "pipeline's artifacts")
    config = _with_dataset(config, fv.dataset, fv.data_root, ours)
    _check_eval(config, check_paths=fv.orchestrator == "local")
    name = fv.pipeline_name or f"magvit-{config.name}".replace("_", "-")
    return RunArgs(config=config, pipeline_root=fv.pipeline_root, orchestrator=fv.orchestrator,
                   pipeline_name=name, image=fv.image,
                   kubeflow_output=fv.kubeflow_output or f"{name}.json",
                   enable_cache=fv.enable_cache, beam_args=beam_args)


def _check_config_file(argv: list[str]) -> None:
    for i, arg in enumerate(argv):
        if arg == "--config" or arg.startswith("--config="):
            value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            if not os.path.isfile(value.split(":", 1)[0]):
                raise UsageError(f"--config={value}: neither a setting name ({', '.join(NAMES)}) "
                                 "nor a config file")


def _with_dataset(config, dataset: str | None, data_root: str | None, argv: list[str]):
    """Applies --dataset and --data_root to the config; checks the data root exists."""
    if dataset and dataset != config.dataset.name:
        if any(a.lstrip("-").startswith("config.dataset.") for a in argv):
            raise UsageError(f"--dataset={dataset} replaces the dataset section of --config "
                             f"(a {config.dataset.name} config); put dataset settings in "
                             "--data_root or use the config's own dataset with --config.dataset.*")
        section = dataset_config(dataset, num_frames=config.dataset.num_frames)
        section.resolution = config.dataset.resolution
        config.dataset = section
    if data_root:
        if "://" not in data_root and not os.path.isdir(data_root):
            raise UsageError(f"--data_root={data_root}: no such folder")
        config.dataset.root = data_root
    elif config.dataset.name != "demo" and not config.dataset.root:
        raise UsageError(f"--data_root is required for dataset {config.dataset.name!r}: the "
                         "folder holding its videos in their native layout")
    return config


def _check_eval(config, check_paths: bool) -> None:
    """The Evaluator's FVD needs I3D weights and a split the data stage writes: fail up front."""
    weights = config.eval.i3d_weights
    if not weights and not config.eval.allow_random_i3d:
        raise UsageError(
            f"config {config.name} has no I3D weights for FVD: pass --config.eval.i3d_weights=PATH, "
            "the local TF-Hub module directory deepmind/i3d-kinetics-400/1 or a kinetics-i3d "
            "checkpoint (they are never downloaded)")
    if weights and check_paths and "://" not in weights:
        try:
            i3d.checkpoint_prefix(weights)
        except i3d.I3DWeightsError as e:
            raise UsageError(f"--config.eval.i3d_weights: {e}") from e
    try:
        real_split(config.eval.split, split_names(config.dataset))
        check_counts(config.eval)
    except ValueError as e:
        raise UsageError(str(e)) from e


def create_pipeline(config: ml_collections.ConfigDict, pipeline_root: str,
                    beam_args: list[str] = (), pipeline_name: str = "magvit",
                    metadata_path: str | None = None, enable_cache: bool = True):
    """The TFX pipeline of every wired stage; `metadata_path`: SQLite MLMD store (local runs)."""
    beam = config_param.dumps_list(beam_args)
    example_gen = video_example_gen.VideoExampleGen(
        config=config_param.dumps(config, video_example_gen.SECTIONS), beam_args=beam)
    tokenizer = tokenizer_trainer.TokenizerTrainer(
        clips=example_gen.outputs["examples"],
        config=config_param.dumps(config, tokenizer_trainer.SECTIONS))
    tokens = pretokenizer.Pretokenizer(
        clips=example_gen.outputs["examples"], tokenizer=tokenizer.outputs["model"],
        beam_args=beam, **pretokenizer.parameters(config))
    transformer = transformer_trainer.TransformerTrainer(
        tokens=tokens.outputs["tokens"], tokenizer=tokenizer.outputs["model"],
        config=config_param.dumps(config, transformer_trainer.SECTIONS))
    evaluation = evaluator.Evaluator(
        clips=example_gen.outputs["examples"], tokenizer=tokenizer.outputs["model"],
        transformer=transformer.outputs["model"],
        config=config_param.dumps(config, evaluator.SECTIONS), beam_args=beam)
    stages = [example_gen, tokenizer, tokens, transformer, evaluation]
    return tfx_pipeline.Pipeline(
        pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=stages,
        enable_cache=enable_cache,
        metadata_connection_config=(metadata.sqlite_metadata_connection_config(metadata_path)
                                    if metadata_path else None))


def run_local(args: RunArgs) -> str:
    """Runs the pipeline with LocalDagRunner; returns the MLMD store's path."""
    from tfx.orchestration.local import local_dag_runner
    os.makedirs(args.pipeline_root, exist_ok=True)
    metadata_path = os.path.join(args.pipeline_root, METADATA_FILE)
    pipeline = create_pipeline(args.config, args.pipeline_root, args.beam_args,
                               args.pipeline_name, metadata_path, args.enable_cache)
    local_dag_runner.LocalDagRunner().run(pipeline)
    return metadata_path


def compile_kubeflow(args: RunArgs) -> str:
    """Writes the KFP v2 pipeline JSON; returns its path."""
    _patch_missing_stock_components()
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kfv2
    pipeline = create_pipeline(args.config, args.pipeline_root, args.beam_args,
                               args.pipeline_name, None, args.enable_cache)
    output_dir, filename = os.path.split(os.path.abspath(args.kubeflow_output))
    runner = kfv2.KubeflowV2DagRunner(
        config=kfv2.KubeflowV2DagRunnerConfig(default_image=args.image),
        output_dir=output_dir, output_filename=filename)
    runner.run(pipeline)
    return os.path.join(output_dir, filename)


def _patch_missing_stock_components() -> None:
    """Lets the KFP v2 compiler run without TensorFlow Model Analysis.

    The compiler asks `isinstance(node, tfx.components.FileBasedExampleGen)` (and InfraValidator);
    without TFMA, which this install leaves out (README), tfx.components sets those names to None
    and isinstance fails. A pipeline cannot hold a component whose class cannot be imported, so
    an empty stand-in class gives the compiler the right answer (False).
    """
    from tfx import components as stock
    for name in ("FileBasedExampleGen", "InfraValidator"):
        if getattr(stock, name, None) is None:
            setattr(stock, name, type(name, (), {}))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in HELP_FLAGS for a in argv):
        print(usage())
        return 0
    try:
        args = parse_args(argv)
    except UsageError as e:
        print(f"pipelines.run: error: {e}\nTry --help.", file=sys.stderr)
        return 2
    if args.orchestrator == "kubeflow":
        path = compile_kubeflow(args)
        print(f"[magvit] wrote the Kubeflow V2 pipeline {args.pipeline_name} to {path} "
              f"(image {args.image}, pipeline root {args.pipeline_root})")
        return 0
    print(f"[magvit] pipeline {args.pipeline_name}: config {args.config.name}, dataset "
          f"{args.config.dataset.name}, root {args.pipeline_root}, Beam {' '.join(args.beam_args) or '(defaults)'}",
          file=sys.stderr)
    metadata_path = run_local(args)
    print(summary.summarize(metadata_path, args.pipeline_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
