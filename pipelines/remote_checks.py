"""What a pipeline whose steps run on other machines needs: every path it names must be remote.

Steps run elsewhere with `--orchestrator=kubeflow` (each step in its own container) and Beam stages
run elsewhere with a remote Beam runner (Dataflow workers). A local path there would be read as a
missing file, or as an empty dataset (`tf.io.gfile.walk` of a missing folder yields nothing), long
after the run started; these checks refuse it up front, naming the flag.
"""
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from magvit import remote

REMOTE_RUNNERS = ("DataflowRunner", "dataflow")
# Config fields that name files or folders a step reads (string fields, '' = unused).
PATH_FIELD_NAMES = ("root", "reference_stats", "init_from_2d")
PATH_FIELD_SUFFIXES = ("_weights",)


def beam_runner(beam_args) -> str:
    return PipelineOptions(list(beam_args)).view_as(StandardOptions).runner or "DirectRunner"


def path_fields(config, prefix: str = "config") -> list[tuple[str, str]]:
    """(flag, value) of every non-empty path field of the config (nested sections walked)."""
    found = []
    for key, value in config.items():
        name = f"{prefix}.{key}"
        if hasattr(value, "items"):
            found.extend(path_fields(value, name))
        elif (isinstance(value, str) and value
              and (key in PATH_FIELD_NAMES or key.endswith(PATH_FIELD_SUFFIXES))):
            found.append((name, value))
    return found


def where_steps_run(orchestrator: str, beam_args) -> str | None:
    """Why some step runs on another machine ('--orchestrator=kubeflow', '--runner=...'), or None."""
    if orchestrator == "kubeflow":
        return "--orchestrator=kubeflow"
    runner = beam_runner(beam_args)
    if runner in REMOTE_RUNNERS:
        return f"--runner={runner}"
    return None


def local_paths(config, pipeline_root: str, orchestrator: str, beam_args) -> list[str]:
    """One message per local path that the machines running the steps could not see."""
    reason = where_steps_run(orchestrator, beam_args)
    if reason is None:
        return []
    named = [("--pipeline_root", pipeline_root)] + path_fields(config)
    names = {"config.dataset.root": "--data_root"}
    return [f"{names.get(flag, '--' + flag)}={value}: a local path, but with {reason} the steps "
            f"run on other machines, which cannot see this one's files; give a gs:// path"
            for flag, value in named if not remote.is_remote(value)]
