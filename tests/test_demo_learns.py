"""The demo visibly learns: the tiny tokenizer reconstructs the demo clips, and (slow) the whole
README command 1 ends with frame prediction that beats copying the last condition frame."""
import json
import os

import numpy as np
import pytest

from magvit import data, train_tokenizer
from magvit.configs import get_config
from magvit.metrics import reconstruction
from pipelines import prepare, run
from pipelines.datasets import demo

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def _blank_background_psnr(pattern: str) -> float:
    """The trivial baseline: every pixel the demo's background colour."""
    clips = data.ResumableIterator(pattern, data.clip_parser((8, 32, 32)), 8, train=False,
                                   flag="clips")
    frames = next(iter(clips))["frames"]
    return float(reconstruction.psnr(frames, np.broadcast_to(
        np.array(demo.BACKGROUND, np.uint8), frames.shape)).mean())


def test_tiny_tokenizer_learns_the_demo_in_a_short_run(tmp_path):
    """A quarter of tiny's tokenizer steps on the demo data clear a lower PSNR bar, above the
    blank-background baseline (19.1 dB on these clips). 400 steps reached 22.2 dB on the 16 test
    clips here (2 cores, seed 0; 750 steps 24.1 dB); the full 1500 steps reach 26.8 dB (README
    command 1)."""
    config = get_config("tiny")
    prepare.run_prepare(config.dataset, str(tmp_path / "data"))
    clips = str(tmp_path / "data" / "demo" / "{}" / "clips-*")
    config.tokenizer.training.num_train_steps = 400
    config.tokenizer.training.checkpoint_every_steps = 1000
    result = train_tokenizer.train(config, clips.format("train"), str(tmp_path / "tok"),
                                   clips.format("test"))
    baseline = _blank_background_psnr(clips.format("test"))
    assert result["step"] == 400
    assert result["eval_psnr"] >= 21.0 and result["eval_psnr"] > baseline + 0.5, (result, baseline)
    assert result["eval_num_clips"] == 16
    # TensorBoard got the reconstructions as images, beside the scalars.
    from tensorboard.backend.event_processing import event_accumulator
    events = event_accumulator.EventAccumulator(str(tmp_path / "tok" / "eval"),
                                                size_guidance={"tensors": 0})
    events.Reload()
    assert "reconstructions" in events.Tags()["tensors"]


def test_demo_check_scores_fvd_of_each_set_and_of_real_train_clips(tmp_path):
    """bench/demo_check.py's FVD figures (real I3D): a set equal to the held-out clips scores 0,
    a noised copy scores far more, and the real-data floor draws its sets from the train split
    (drawn from the held-out clips themselves, every set is those clips: 0)."""
    import sys
    sys.path.insert(0, BENCH)
    import demo_check  # pylint: disable=import-error,import-outside-toplevel
    from tests.test_tokenizer_training import write_demo_clips
    test = write_demo_clips(str(tmp_path / "test.tfrecord"), seed=1, videos_per_class=1)
    other = write_demo_clips(str(tmp_path / "train.tfrecord"), seed=2, videos_per_class=1)
    parse = data.clip_parser((8, 32, 32))
    truth = next(iter(data.ResumableIterator(test, parse, 8, train=False, flag="clips")))["frames"]
    noised = np.clip(truth + np.random.default_rng(0).normal(0, 25, truth.shape), 0, 255)
    same = demo_check.fvd_figures(truth, {"same": truth, "noised": noised.astype(np.uint8)},
                                  test, draws=2)
    assert same["same"] == pytest.approx(0, abs=1e-6) and same["noised"] > 100, same
    assert same["real_floor_mean"] == pytest.approx(0, abs=1e-6) and same["real_floor_draws"] == 2
    floor = demo_check.fvd_figures(truth, {}, other, draws=2)
    assert floor["real_floor_min"] > 1.0 and floor["real_floor_max"] >= floor["real_floor_min"]


def test_demo_check_credits_a_shape_that_moves_or_grows_like_the_truth():
    """bench/demo_check.py's per-sample comparison with copying the last condition frame: shape
    overlap credits a disc that grows like the truth (the `pulse` class), which the centroid alone
    cannot tell from the copy; a disc moving the right way, if too slowly, is nearer on both; one
    frozen like the copy (a tie) or moving backwards is nearer on neither."""
    import sys
    sys.path.insert(0, BENCH)
    import demo_check  # pylint: disable=import-error,import-outside-toplevel
    yy, xx = np.mgrid[0:32, 0:32]

    def discs(centres_x, radii):
        # pylint: disable-next=protected-access
        inside = [demo._disc(yy, xx, 16, x, r) for x, r in zip(centres_x, radii)]
        return np.where(np.asarray(inside)[..., None], demo.PALETTE[3],
                        demo.BACKGROUND).astype(np.uint8)

    grows, held = discs([16] * 4, [4, 6, 8, 10]), discs([16] * 4, [3] * 4)
    assert demo_check.nearer_than_copy(grows, held, grows) == {"shape": True, "position": False}
    truth, still = discs([8, 10, 12, 14], [4] * 4), discs([6] * 4, [4] * 4)
    slow, backwards = discs([7, 8, 9, 10], [4] * 4), discs([4, 2, 0, -2], [4] * 4)
    assert demo_check.nearer_than_copy(slow, still, truth) == {"shape": True, "position": True}
    for wrong in (still, backwards):
        assert demo_check.nearer_than_copy(wrong, still, truth) == {"shape": False,
                                                                    "position": False}


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 18 targets not all reached: README command 1 on "
                   "seed 0 gave tokenizer 26.8 dB (>= 26, met), frame prediction 22.2 dB vs "
                   "copy-last-frame 19.6 dB (met), the shape overlapping the truth more than "
                   "the copy in 50-56% of 16 samples over sampling seeds 0-3 (orbit 4/4, pulse "
                   "2-3/4, slide 1/4, bounce 0-1/4: not most), FVD 730 vs 270 (not "
                   "met: the tokenizer's own reconstructions score 650; random sets of 16 real "
                   "train clips score 275 on average, 199-363; on 256 fresh clips the previous "
                   "run's samples scored 585, copying 182, its reconstructions 537); strict: "
                   "passing fails until removed")
def test_readme_command_1_learns(tmp_path, capsys):
    """README command 1 on a fixed seed: tokenizer PSNR >= 26 dB on the test split; frame
    prediction's generated frames beat copying the last condition frame, on PSNR, on FVD and, for
    most samples, on where the shape is and how large (demo_check's shape overlap)."""
    import sys
    sys.path.insert(0, BENCH)
    import demo_check  # pylint: disable=import-error,import-outside-toplevel
    from components import summary
    root = str(tmp_path / "demo")
    assert run.main(["--dataset=demo", "--config=tiny", f"--pipeline_root={root}",
                     "--pipeline_name=demo"]) == 0
    records = {r.stage: r for r in summary.last_run(
        summary.open_store(os.path.join(root, run.METADATA_FILE)), "demo")}
    clips = records["VideoExampleGen"].outputs["examples"]
    figures = demo_check.check(records["TokenizerTrainer"].outputs["model"],
                               records["TransformerTrainer"].outputs["model"],
                               os.path.join(clips, "demo", "test", "clips-*"), count=16,
                               train_pattern=os.path.join(clips, "demo", "train", "clips-*"))
    print(json.dumps(figures, indent=2))
    assert figures["tokenizer_psnr"] >= 26.0, figures
    assert figures["frame_prediction_psnr"] > figures["copy_last_frame_psnr"], figures
    assert figures["shape_follows_truth"] > 0.5, figures
    numbers = records["Evaluator"].numbers
    assert (numbers["evaluation/frame_prediction/fvd"]
            < numbers["evaluation/frame_prediction/fvd_baseline"]), numbers
