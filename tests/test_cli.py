"""One command-line convention for every entry point (magvit/cli.py) and the default Beam runner."""
import os
import re
import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.runners.portability import prism_runner

from magvit import sample, train_tokenizer, train_transformer
from magvit.metrics import lpips
from pipelines import beam_options, evaluate, prepare, pretokenize, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# entry point -> (module, its required flags with a value each)
PROGRAMS = {
    "pipelines.prepare": (prepare, {"out_dir": "/tmp/x"}),
    "pipelines.pretokenize": (pretokenize, {"clips": "a-*", "tokenizer": "t", "out": "o"}),
    "pipelines.evaluate": (evaluate, {"real": "r-*", "generated": "g-*", "out": "o"}),
    "magvit.train_tokenizer": (train_tokenizer, {"data": "d-*", "workdir": "w"}),
    "magvit.train_transformer": (train_transformer, {"data": "d-*", "tokenizer": "t",
                                                     "workdir": "w"}),
    "magvit.sample": (sample, {"task": "frame_prediction", "tokenizer": "t", "transformer": "m",
                               "out": "o"}),
    "magvit.metrics.lpips": (lpips, {}),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_help_lists_every_flag_without_the_required_ones(name, capsys):
    module, _ = PROGRAMS[name]
    assert module.main(["--help"]) == 0
    out = capsys.readouterr().out
    names = [flag for flag in module.PROGRAM.flag_values([name])._flags()  # pylint: disable=protected-access
             if flag not in ("flagfile", "undefok")]
    assert names and all(re.search(rf"--(\[no\])?{flag}:", out) for flag in names), (names, out)
    assert f"python -m {name}" in out


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_missing_required_and_unknown_flags_are_named(name, capsys):
    module, required = PROGRAMS[name]
    for missing in required:
        argv = [f"--{k}={v}" for k, v in required.items() if k != missing]
        assert module.main(argv) == 2
        err = capsys.readouterr().err
        assert f"{name}: error: --{missing} is required" in err, err
    assert module.main([f"--{k}={v}" for k, v in required.items()] + ["--no_such_flag=3"]) == 2
    assert "Unknown command line flag 'no_such_flag'" in capsys.readouterr().err
    assert module.main([f"--{k}={v}" for k, v in required.items()] + ["stray"]) == 2
    assert "unexpected argument(s): stray" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["pipelines.prepare", "magvit.train_tokenizer"])
def test_config_overrides_are_type_checked_and_bad_fields_named(name, capsys):
    module, required = PROGRAMS[name]
    flags_ = [f"--{k}={v}" for k, v in required.items()]
    fv, _ = module.PROGRAM.parse(flags_ + ["--config=bair_b", "--config.seed=7"])
    assert fv.config.name == "bair_b" and fv.config.seed == 7
    assert module.main(flags_ + ["--config.tokenizer.no_field=1"]) == 2
    assert "the config has no field 'no_field'" in capsys.readouterr().err
    assert module.main(flags_ + ["--config=not_a_setting"]) == 2
    assert "--config=not_a_setting: neither a setting name" in capsys.readouterr().err


def test_beam_options_pass_through_beam_jobs():
    fv, beam_args = prepare.PROGRAM.parse(["--out_dir=/tmp/o", "--direct_num_workers", "2",
                                           "--config.seed=3", "--runner=DirectRunner"])
    assert fv.out_dir == "/tmp/o" and fv.config.seed == 3
    assert beam_args == ["--direct_num_workers", "2", "--runner=DirectRunner"]
    _, beam_args = pretokenize.PROGRAM.parse(["--clips=a", "--tokenizer=t", "--out=o",
                                              "--temp_location=gs://b/tmp"])
    assert beam_args == ["--temp_location=gs://b/tmp"]
    # Programs that run no Beam job refuse Beam flags like any unknown flag.
    with pytest.raises(Exception, match="runner"):
        train_tokenizer.PROGRAM.parse(["--data=d", "--workdir=w", "--runner=DirectRunner"])


def test_run_keeps_the_convention(capsys):
    assert run.main(["--help"]) == 0
    assert "--pipeline_root:" in capsys.readouterr().out
    assert run.main(["--dataset=demo"]) == 2
    assert "--pipeline_root is required" in capsys.readouterr().err
    assert run.main(["--pipeline_root=/tmp/r", "--no_such_flag"]) == 2
    assert "no_such_flag" in capsys.readouterr().err


def test_prepare_help_as_a_program():
    """The issue's case: `python -m pipelines.prepare --help` used to fail on --out_dir."""
    result = subprocess.run([sys.executable, "-m", "pipelines.prepare", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--out_dir:" in result.stdout and "--config:" in result.stdout


@pytest.fixture
def prism_calls(monkeypatch):
    """Records any attempt to start (and download) Beam's Prism runner."""
    calls = []

    def refuse_download(url, *args, **kwargs):
        calls.append(("download", url))
        raise OSError("no network in this test")

    original = prism_runner.PrismRunner.run_pipeline

    def record_prism(self, pipeline, options):
        calls.append(("prism", type(self).__name__))
        return original(self, pipeline, options)

    monkeypatch.setattr(prism_runner, "urlopen", refuse_download)
    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", record_prism)
    return calls


def _doubled(options, tmp_path):
    out = str(tmp_path / "out")
    with beam.Pipeline(options=options) as p:
        _ = (p | beam.Create([1, 2, 3]) | beam.Map(lambda x: 2 * x)
             | beam.io.WriteToText(out, shard_name_template=""))
    with open(out) as f:
        return sorted(int(line) for line in f)


def test_no_runner_means_the_in_process_runner_and_no_prism_download(prism_calls, tmp_path):
    options = beam_options.pipeline_options([])
    assert options.view_as(beam.options.pipeline_options.StandardOptions).runner == "FnApiRunner"
    assert _doubled(options, tmp_path) == [2, 4, 6]
    assert prism_calls == []
    # A runner given is kept as given.
    given = beam_options.pipeline_options(["--runner=DirectRunner", "--direct_num_workers=1"])
    assert given.view_as(beam.options.pipeline_options.StandardOptions).runner == "DirectRunner"


def test_beam_defaults_would_try_prism(prism_calls, tmp_path):
    """The hazard the default avoids: Beam's own default starts Prism, which downloads it."""
    assert _doubled(beam.options.pipeline_options.PipelineOptions([]), tmp_path) == [2, 4, 6]
    assert prism_calls[0] == ("prism", "PrismRunner")
    assert any(kind == "download" for kind, _ in prism_calls)


def test_prepare_job_without_runner_touches_no_prism(prism_calls, tmp_path):
    from magvit.configs import get_config
    config = get_config("tiny").dataset
    config.demo_videos_per_class = 2
    config.demo_num_frames = 8
    stats = prepare.run_prepare(config, str(tmp_path / "out"))
    assert stats["totals"]["clips_written"] == 8
    assert prism_calls == []
