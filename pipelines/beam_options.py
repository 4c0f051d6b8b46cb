"""Beam pipeline options for every Beam job: pass-through from the command line, default runner.

With no `--runner`, Beam 2.77's default (DirectRunner, i.e. SwitchingDirectRunner) first tries
the Prism runner, which downloads a Go binary from GitHub and prints a long warning before it
falls back when there is no network. Our jobs are batch pipelines that the in-process FnApiRunner
(the runner DirectRunner falls back to) executes, so without a `--runner` that is what they get:
no network access, no subprocess. `--runner=DirectRunner` (or any other) is honoured as given.
"""
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

DEFAULT_RUNNER = "FnApiRunner"   # in-process; honours --direct_num_workers / --direct_running_mode


def pipeline_options(beam_args=()) -> PipelineOptions:
    """PipelineOptions of `beam_args`, with the in-process runner unless a runner is given."""
    options = PipelineOptions(list(beam_args or []))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = DEFAULT_RUNNER
    return options


def _beam_option_parser():
    """Beam's own argparse parser of every registered PipelineOptions class."""
    captured = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=captured.append)
    return captured[0]


def split_beam_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(ours, beam): argv tokens Beam's option parser does not know, and those it does."""
    _, unknown = _beam_option_parser().parse_known_args(argv)
    ours, beam, j = [], [], 0
    for token in argv:  # parse_known_args keeps the unknown tokens in order
        if j < len(unknown) and token == unknown[j]:
            ours.append(token)
            j += 1
        else:
            beam.append(token)
    return ours, beam


BEAM_HELP = ("Beam pipeline options (--runner, --direct_num_workers, --direct_running_mode, "
             "--project, --region, --temp_location, ...) pass through to the Beam job; without "
             f"--runner the job runs in this process ({DEFAULT_RUNNER}: no Prism download).")
