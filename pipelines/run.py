"""Runs MAGVIT as one TFX pipeline, from raw videos to trained models and their metrics.

    python -m pipelines.run --dataset=demo --config=tiny --pipeline_root=runs/demo

`--orchestrator=local` runs the stages here with LocalDagRunner (a second run with the same inputs
and config is served from cache) and ends with a summary. Artifacts go under `--pipeline_root`,
local or remote (gs://); the SQLite MLMD store always stays on this machine (`--metadata_path`).
`--orchestrator=kubeflow` compiles the same pipeline to the KFP v2 JSON that Kubeflow Pipelines
and Vertex AI Pipelines run, in the container image given by `--image` (Dockerfile); the trainers
and the evaluator ask for `--accelerator` x `--accelerator_count`, `--cpu_limit`, `--memory_limit`;
with `--trainer_replicas=N` (N > 1) each trainer step runs a multi-host Vertex AI CustomJob of N
`--trainer_machine_type` machines instead (components/custom_job.py).
With `--orchestrator=kubeflow` or a remote Beam runner (Dataflow) every path must be remote: a
local one is refused before anything runs.

Beam pipeline options (`--runner`, `--direct_num_workers`, `--project`, `--region`,
`--temp_location`, `--setup_file`...) pass through to every Beam stage (without `--runner`: the
in-process FnApiRunner, see pipelines/beam_options.py); any other unknown flag is an error. Every hyper-parameter comes from `--config` (`--config.key=value` overrides one field).
"""
import dataclasses
import datetime
import hashlib
import os
import sys

# Before TensorFlow loads: keep its C++ start-up notices (CUDA probing, oneDNN) off the console.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # pylint: disable=wrong-import-position
import ml_collections
from ml_collections import config_flags as mlc_config_flags
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
import tensorflow as tf

from components import (config_param, evaluator, pretokenizer, resources, run_guard, summary,
                        tokenizer_trainer, transformer_trainer, video_example_gen)
from magvit import host_memory, remote
from magvit.configs import NAMES
from magvit.configs.dataset import DATASET_NAMES, dataset_config
from magvit.configs.flags import config_path, normalize_argv, unknown_field_message
from pipelines import remote_checks, run_checks
from pipelines.beam_options import BEAM_HELP, split_beam_args  # noqa: F401 (re-exported)
from pipelines.run_checks import UsageError  # noqa: F401 (re-exported)

HELP_FLAGS = ("-h", "-help", "--help", "--helpshort", "--helpfull")
DEFAULT_CONFIG = "tiny"
DEFAULT_IMAGE = "magvit:latest"
METADATA_FILE = "metadata.sqlite"
METADATA_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                              "magvit", "mlmd")


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
    metadata_path: str = ""
    machine: resources.Resources = resources.Resources()
    image_tokenizer: bool = False
    image_tokenizer_steps: int = 0
    pools: resources.TrainerPools = resources.TrainerPools()


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
        "pipeline_root", None, "Required. Folder (or gs:// path) for the pipeline's artifacts.",
        flag_values=fv)
    flags.DEFINE_string(
        "metadata_path", None, "--orchestrator=local: the SQLite MLMD store (always a local "
        f"file, also with a remote --pipeline_root). Default: <pipeline_root>/{METADATA_FILE} for "
        f"a local root, {METADATA_CACHE}/<hash of the root>/{METADATA_FILE} for a remote one.",
        flag_values=fv)
    flags.DEFINE_enum(
        "orchestrator", "local", ["local", "kubeflow"], "local: run here with LocalDagRunner. "
        "kubeflow: write the KFP v2 pipeline JSON for Kubeflow Pipelines / Vertex AI.",
        flag_values=fv)
    flags.DEFINE_string("pipeline_name", None, "Default: magvit-<config name>.", flag_values=fv)
    flags.DEFINE_string("image", DEFAULT_IMAGE, "Container image the Kubeflow pipeline's steps "
                        "run in (built by the Dockerfile).", flag_values=fv)
    flags.DEFINE_string("kubeflow_output", None, "Where --orchestrator=kubeflow writes the "
                        "pipeline JSON; default: <pipeline_name>.json here.", flag_values=fv)
    flags.DEFINE_enum(
        "accelerator", "", ("",) + resources.ACCELERATOR_TYPES, "--orchestrator=kubeflow: the "
        "accelerator the trainers and the evaluator ask for (e.g. NVIDIA_H100_80GB, TPU_V5_LITEPOD;"
        " build the image with the matching ACCELERATOR build arg). Default: none (CPU).",
        flag_values=fv)
    flags.DEFINE_integer("accelerator_count", 0, "--orchestrator=kubeflow: accelerators per "
                         "trainer / evaluator step (>= 1 with --accelerator).", flag_values=fv)
    flags.DEFINE_float("cpu_limit", 0, "--orchestrator=kubeflow: vCPUs of the trainer / "
                       "evaluator steps (0: the platform default).", flag_values=fv)
    flags.DEFINE_string("memory_limit", "", "--orchestrator=kubeflow: memory of the trainer / "
                        "evaluator steps, e.g. 64G ('': the platform default).", flag_values=fv)
    flags.DEFINE_integer("trainer_replicas", 1, "--orchestrator=kubeflow: machines per trainer "
                         "step; N > 1 launches a Vertex AI CustomJob of N replicas (multi-host "
                         "jax.distributed), each with the --accelerator x --accelerator_count.",
                         flag_values=fv)
    flags.DEFINE_string("trainer_machine_type", "", "--trainer_replicas > 1: the Vertex AI "
                        "machine type of each replica, e.g. a3-highgpu-8g.", flag_values=fv)
    flags.DEFINE_string("trainer_region", "", "--trainer_replicas > 1: the region of the "
                        "CustomJob, e.g. us-central1.", flag_values=fv)
    flags.DEFINE_string("trainer_project", "", "--trainer_replicas > 1: the CustomJob's project "
                        "('': the pipeline step's own project).", flag_values=fv)
    flags.DEFINE_bool("enable_cache", True, "Reuse the outputs of stages whose inputs and "
                      "config did not change.", flag_values=fv)
    flags.DEFINE_bool(
        "image_tokenizer", False, "Add the image-tokenizer stage (ImageTokenizerTrainer): the 2D "
        "tokenizer of the `<config>_image` setting, trained on clip frames (or on the images of "
        "--config.tokenizer.training.image_folder), which the video tokenizer then inflates "
        "(generator, EMA, discriminator), as the official image-to-video initialisation.",
        flag_values=fv)
    flags.DEFINE_integer("image_tokenizer_steps", 0, "--image_tokenizer: training steps of the 2D "
                         "tokenizer (0: the config's tokenizer.training.num_train_steps).",
                         lower_bound=0, flag_values=fv)
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
        raise UsageError(unknown_field_message(e, ours)) from e
    except (flags.Error, OSError, ValueError, TypeError) as e:
        raise UsageError(str(e).strip()) from e
    if positional:
        raise UsageError(f"unexpected argument(s): {' '.join(positional)}")
    if not fv.pipeline_root:
        raise UsageError("--pipeline_root is required: the folder (or gs:// path) for the "
                         "pipeline's artifacts")
    config = _with_dataset(config, fv.dataset, fv.data_root, ours, fv.orchestrator == "local")
    machine, pools = _resources(fv)
    problems = remote_checks.local_paths(config, fv.pipeline_root, fv.orchestrator, beam_args)
    if problems:
        raise UsageError("\n  ".join(problems))
    run_checks.check_image_tokenizer(config, fv.image_tokenizer, fv.orchestrator == "kubeflow")
    if fv["image_tokenizer_steps"].present and not fv.image_tokenizer:
        raise UsageError("--image_tokenizer_steps needs --image_tokenizer")
    run_checks.check_eval(config, check_paths=fv.orchestrator == "local")
    name = fv.pipeline_name or f"magvit-{config.name}".replace("_", "-")
    return RunArgs(config=config, pipeline_root=fv.pipeline_root, orchestrator=fv.orchestrator,
                   pipeline_name=name, image=fv.image,
                   kubeflow_output=fv.kubeflow_output or f"{name}.json",
                   enable_cache=fv.enable_cache, beam_args=beam_args,
                   metadata_path=fv.metadata_path or default_metadata_path(fv.pipeline_root),
                   machine=machine, image_tokenizer=fv.image_tokenizer,
                   image_tokenizer_steps=fv.image_tokenizer_steps, pools=pools)


def default_metadata_path(pipeline_root: str) -> str:
    """<root>/metadata.sqlite for a local root; a per-root file in the local cache otherwise."""
    if not remote.is_remote(pipeline_root):
        return os.path.join(pipeline_root, METADATA_FILE)
    digest = hashlib.sha256(pipeline_root.rstrip("/").encode()).hexdigest()[:16]
    return os.path.join(METADATA_CACHE, digest, METADATA_FILE)


def _resources(fv) -> tuple[resources.Resources, resources.TrainerPools]:
    given = [f for f in ("accelerator", "accelerator_count", "cpu_limit", "memory_limit",
                         "trainer_replicas", "trainer_machine_type", "trainer_region",
                         "trainer_project") if fv[f].present]
    if given and fv.orchestrator != "kubeflow":
        raise UsageError(f"--{given[0]} asks Kubeflow / Vertex AI for machines: it needs "
                         "--orchestrator=kubeflow (local runs use this machine's devices)")
    try:
        return (resources.Resources(fv.accelerator, fv.accelerator_count, fv.cpu_limit,
                                    resources.parse_memory_gb(fv.memory_limit)),
                resources.TrainerPools(fv.trainer_replicas, fv.trainer_machine_type, fv.image,
                                       fv.trainer_project, fv.trainer_region, fv.accelerator,
                                       fv.accelerator_count))
    except ValueError as e:
        raise UsageError(str(e)) from e


def _check_config_file(argv: list[str]) -> None:
    for i, arg in enumerate(argv):
        if arg == "--config" or arg.startswith("--config="):
            value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            if not os.path.isfile(value.split(":", 1)[0]):  # local-only (config files)
                raise UsageError(f"--config={value}: neither a setting name ({', '.join(NAMES)}) "
                                 "nor a config file")


def _with_dataset(config, dataset: str | None, data_root: str | None, argv: list[str],
                  check_paths: bool = True):
    """Applies --dataset and --data_root to the config; checks the data root exists (when this
    machine runs the stages)."""
    if dataset and dataset != config.dataset.name:
        section = dataset_config(dataset, num_frames=config.dataset.num_frames)
        section.resolution = config.dataset.resolution
        # --config.dataset.<key> overrides apply to the new section too (already type-checked)
        for arg in argv:
            if arg.startswith("--config.dataset."):
                key = arg.split("=", 1)[0][len("--config.dataset."):]
                if key == "name":
                    raise UsageError(f"{arg}: give the dataset with --dataset alone")
                section[key] = config.dataset[key]
        config.dataset = section
    if data_root:
        if check_paths and not tf.io.gfile.isdir(data_root):
            raise UsageError(f"--data_root={data_root}: no such folder")
        config.dataset.root = data_root
    elif config.dataset.name != "demo" and not config.dataset.root:
        raise UsageError(f"--data_root is required for dataset {config.dataset.name!r}: the "
                         "folder holding its videos in their native layout")
    run_checks.check_dataset(config.dataset, tokenizer_trainer.TRAIN_SPLIT,
                             tokenizer_trainer.EVAL_SPLIT)
    return config


def create_pipeline(config: ml_collections.ConfigDict, pipeline_root: str,
                    beam_args: list[str] = (), pipeline_name: str = "magvit",
                    metadata_path: str | None = None, enable_cache: bool = True,
                    machine: resources.Resources = resources.Resources(),
                    image_tokenizer: bool = False, image_tokenizer_steps: int = 0,
                    pools: resources.TrainerPools = resources.TrainerPools()):
    """The TFX pipeline of every wired stage; `metadata_path`: SQLite MLMD store (local runs);
    `machine`: what the trainers and the evaluator ask Kubeflow / Vertex AI for; `pools`: the
    trainers' multi-host CustomJob (`--trainer_replicas` > 1);
    `image_tokenizer`: add the 2D tokenizer stage (`image_tokenizer_steps` steps, 0: the config's)
    that the video tokenizer inflates."""
    beam = config_param.dumps_list(beam_args)
    multi_host = {"trainer_pools": pools.to_json()} if pools else {}
    example_gen = video_example_gen.VideoExampleGen(
        config=config_param.dumps(config, video_example_gen.SECTIONS), beam_args=beam)
    trainers = []
    if image_tokenizer:
        trainers.append(tokenizer_trainer.TokenizerTrainer(
            clips=example_gen.outputs["examples"], config=config_param.dumps(
                tokenizer_trainer.image_tokenizer_config(config, image_tokenizer_steps),
                tokenizer_trainer.SECTIONS), **multi_host,
        ).with_id(tokenizer_trainer.IMAGE_STAGE_ID))
    tokenizer = tokenizer_trainer.TokenizerTrainer(
        clips=example_gen.outputs["examples"],
        config=config_param.dumps(tokenizer_trainer.video_tokenizer_config(config),
                                  tokenizer_trainer.SECTIONS), **multi_host,
        **({"image_tokenizer": trainers[0].outputs["model"]} if trainers else {}))
    trainers.append(tokenizer)
    tokens = pretokenizer.Pretokenizer(
        clips=example_gen.outputs["examples"], tokenizer=tokenizer.outputs["model"],
        beam_args=beam, **pretokenizer.parameters(config))
    transformer = transformer_trainer.TransformerTrainer(
        tokens=tokens.outputs["tokens"], tokenizer=tokenizer.outputs["model"],
        config=config_param.dumps(config, transformer_trainer.SECTIONS), **multi_host)
    evaluation = evaluator.Evaluator(
        clips=example_gen.outputs["examples"], tokenizer=tokenizer.outputs["model"],
        transformer=transformer.outputs["model"],
        config=config_param.dumps(config, evaluator.SECTIONS), beam_args=beam)
    stages = [example_gen, *trainers, tokens, transformer, evaluation]
    if machine:   # with `pools` the trainer steps only wait for their CustomJob's machines
        for stage in (evaluation,) if pools else (*trainers, transformer, evaluation):
            stage.with_platform_config(resources.resource_spec(machine))
    return tfx_pipeline.Pipeline(
        pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=stages,
        enable_cache=enable_cache,
        metadata_connection_config=(metadata.sqlite_metadata_connection_config(metadata_path)
                                    if metadata_path else None))


def new_run_id() -> str:
    """A run id unique on this machine (TFX's own is the start time alone)."""
    return f"{datetime.datetime.now().isoformat()}-{os.getpid()}"


def run_local(args: RunArgs, run_id: str | None = None) -> str:
    """Runs the pipeline with LocalDagRunner as run `run_id`; returns the MLMD store's path.

    One run per pipeline root at a time (`components.run_guard`): a concurrent run is refused
    with RunInProgress; what a killed earlier run left RUNNING is marked failed first."""
    from tfx.orchestration.local import local_dag_runner
    from tfx.dsl.compiler import constants as compiler_constants
    from tfx.orchestration.portable import runtime_parameter_utils, tfx_runner
    tf.io.gfile.makedirs(args.pipeline_root)
    metadata_path = args.metadata_path or default_metadata_path(args.pipeline_root)
    metadata_dir = os.path.dirname(os.path.abspath(metadata_path))  # local-only
    os.makedirs(metadata_dir, exist_ok=True)  # local-only
    with run_guard.hold_root(args.pipeline_root, lock_dir=metadata_dir):
        run_guard.recover_interrupted(metadata_path)
        pipeline = create_pipeline(args.config, args.pipeline_root, args.beam_args,
                                   args.pipeline_name, metadata_path, args.enable_cache,
                                   image_tokenizer=args.image_tokenizer,
                                   image_tokenizer_steps=args.image_tokenizer_steps)
        ir = tfx_runner._make_pipeline_proto(pipeline)  # pylint: disable=protected-access
        runtime_parameter_utils.substitute_runtime_parameter(
            ir, {compiler_constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id or new_run_id()})
        local_dag_runner.LocalDagRunner().run_with_ir(ir)
    return metadata_path


def compile_kubeflow(args: RunArgs) -> str:
    """Writes the KFP v2 pipeline JSON; returns its path."""
    _patch_missing_stock_components()
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kfv2
    pipeline = create_pipeline(args.config, args.pipeline_root, args.beam_args,
                               args.pipeline_name, None, args.enable_cache, args.machine,
                               args.image_tokenizer, args.image_tokenizer_steps, args.pools)
    output_dir, filename = os.path.split(remote.absolute(args.kubeflow_output))
    runner = kfv2.KubeflowV2DagRunner(
        # Pipeline spec 2.1: steps get their parameters as `parameterValues` (what Vertex AI
        # sends today) and the entrypoint their types; 2.0 reads the deprecated `parameters`.
        config=kfv2.KubeflowV2DagRunnerConfig(default_image=args.image,
                                              use_pipeline_spec_2_1=True),
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
    run_id = new_run_id()
    host_memory.dispatch_on_calling_thread()   # before JAX starts (the trainers run in-process)
    try:
        metadata_path = run_local(args, run_id)
    except run_guard.RunInProgress as e:
        print(f"pipelines.run: error: {e}", file=sys.stderr)
        return 2
    print(summary.summarize(metadata_path, args.pipeline_name, run_id))
    return 0


if __name__ == "__main__":
    sys.exit(main())
