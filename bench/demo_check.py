"""Does the demo visibly learn? Prints the figures of a finished `pipelines.run --dataset=demo` run.

    PYTHONPATH=. python bench/demo_check.py --tokenizer=DIR --transformer=DIR \
        --clips='runs/demo/.../test/clips-*' [--train_clips='runs/demo/.../train/clips-*'] \
        [--samples=16] [--seed=0] [--floor_draws=5]

For the held-out clips (the demo's `test` split) it prints
  tokenizer PSNR    reconstruction PSNR (dB, mean over clips of the per-frame mean)
  frame prediction  PSNR of the GENERATED frames only (those after the condition frames) against
                    the truth, beside the copy-the-last-condition-frame baseline on the same frames
  shape             the share of samples whose shape, in the generated frames, overlaps the
                    truth's more than the copied last frame's does (intersection over union of the
                    pixels brighter than the truth's background, per frame, averaged), i.e. "the
                    shape moves, grows and shrinks the way the truth does"; also per demo class
  position          the same share judged by the shape's centroid alone. It cannot credit the
                    `pulse` class, a disc growing and shrinking in place: there the copy's
                    centroid is already the truth's, so no sample can be nearer
  FVD               (real Kinetics-400 I3D, against the same held-out clips) of the samples, of
                    the copy-last-frame baseline, of the tokenizer's reconstructions (no sample
                    decoded by it is expected to score far below them), and, with
                    --train_clips, the real-data floor: FVD of `--floor_draws` random sets of as
                    many real clips of the train split (other videos of the same classes), the
                    score of data that is real but not these clips at this sample count
"""
import json

import numpy as np
from absl import flags

from magvit import cli, data
from magvit.metrics import frechet, fvd, reconstruction
from magvit.sample import Sampler
from magvit.tokenizer.api import Tokenizer
from magvit.transformer import tasks as task_lib
from pipelines.datasets import demo


def _define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("tokenizer", None, "Tokenizer work directory.", flag_values=fv)
    flags.DEFINE_string("transformer", None, "Transformer work directory.", flag_values=fv)
    flags.DEFINE_string("clips", None, "Held-out clip TFRecords (glob).", flag_values=fv)
    flags.DEFINE_integer("samples", 16, "Clips to sample from.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Sampling seed.", flag_values=fv)
    flags.DEFINE_string("train_clips", None, "Train-split clip TFRecords (glob): with it, the "
                        "real-data FVD floor.", flag_values=fv)
    flags.DEFINE_integer("floor_draws", 5, "Random sets of train clips for the FVD floor.",
                         lower_bound=1, flag_values=fv)


PROGRAM = cli.Program("bench.demo_check", __doc__, _define_flags, config_default=None,
                      required=("tokenizer", "transformer", "clips"))


def _shape_masks(video: np.ndarray, background: int, threshold: int = 40) -> np.ndarray:
    """bool [T, H, W]: the pixels brighter than `background` by more than `threshold` in some
    channel."""
    return video.astype(int).max(-1) > background + threshold


def _centroids(bright: np.ndarray) -> np.ndarray:
    """[T, 2] centroid (y, x) per frame of a [T, H, W] mask (nan where the frame has none)."""
    yy, xx = np.mgrid[0:bright.shape[1], 0:bright.shape[2]]
    out = []
    for mask in bright:
        n = max(mask.sum(), 1)
        out.append(((yy * mask).sum() / n, (xx * mask).sum() / n) if mask.any() else (np.nan,) * 2)
    return np.asarray(out, float)


def _overlap(masks: np.ndarray, truth_masks: np.ndarray) -> float:
    """Mean over frames of the intersection over union (a frame where both are empty: 1)."""
    scores = [(m & t).sum() / (m | t).sum() if (m | t).any() else 1.0
              for m, t in zip(masks, truth_masks)]
    return float(np.mean(scores))


def nearer_than_copy(generated: np.ndarray, copied: np.ndarray, truth: np.ndarray) -> dict:
    """Whether the generated frames [T, H, W, 3] follow `truth` more closely than `copied` does:
    by shape overlap (IoU) and by centroid distance; strictly, a tie is not nearer. The shapes of
    all three are the pixels brighter than the truth's dark background (the darkest value of each
    channel, the brightest of those three): a decoded video's own darkest pixels are its ringing,
    not the scene's background."""
    background = int(truth.reshape(-1, 3).min(0).max())
    t, g, c = (_shape_masks(v, background) for v in (truth, generated, copied))
    ct, cg, cc = (_centroids(m) for m in (t, g, c))
    distance_g, distance_c = (np.nanmean(np.linalg.norm(x - ct, axis=1)) for x in (cg, cc))
    return {"shape": bool(_overlap(g, t) > _overlap(c, t)),
            "position": bool(distance_g < distance_c)}


def fvd_figures(truth, videos: dict, train_pattern: str | None = None, draws: int = 5,
                seed: int = 0) -> dict:
    """FVD of each named set of uint8 videos against `truth`; with `train_pattern`, the real-data
    floor: `draws` random sets of len(truth) clips of that split against `truth`."""
    evaluator = fvd.FVD(batch_size=8)
    real = evaluator.features(truth)     # once: I3D features are the cost, not the statistics

    def score(v):
        return frechet.frechet_distance_from_activations(real, evaluator.features(v))
    out = {name: score(v) for name, v in videos.items()}
    if train_pattern:
        pool = np.concatenate([b["frames"] for b in data.ResumableIterator(
            train_pattern, data.clip_parser(truth.shape[1:4]), 64, train=False,
            flag="train_clips")])
        rng = np.random.default_rng(seed)
        floor = [score(pool[rng.choice(len(pool), len(truth), replace=False)])
                 for _ in range(draws)]
        out.update(real_floor_mean=float(np.mean(floor)), real_floor_min=float(np.min(floor)),
                   real_floor_max=float(np.max(floor)), real_floor_draws=draws)
    return out


def check(tokenizer_dir: str, transformer_dir: str, pattern: str, count: int = 16,
          seed: int = 0, train_pattern: str | None = None, floor_draws: int = 5) -> dict:
    tokenizer = Tokenizer.load(tokenizer_dir)
    clip_shape = tuple(int(s) for s in tokenizer.clip_shape)
    clips = data.ResumableIterator(pattern, data.clip_parser(clip_shape), count, seed=seed,
                                   train=False, flag="clips")
    batch = next(iter(clips))
    truth, labels = batch["frames"], batch["label"]
    recon = tokenizer.decode(tokenizer.encode(truth))
    sampler = Sampler(transformer_dir, tokenizer)
    task = task_lib.get_task("frame_prediction", sampler.config.transformer.condition_frames)
    generated = sampler.generate("frame_prediction", truth, seed=seed)
    known = task.known_mask(truth.shape[1:4], truth.shape[1])[:, 0, 0]   # [T] condition frames
    future = ~known
    copied = task.condition_video(truth)                                 # last condition frame
    nearer = [nearer_than_copy(g[future], c[future], t[future])
              for g, c, t in zip(generated, copied, truth)]
    shape = np.asarray([n["shape"] for n in nearer])
    return {
        "num_clips": int(len(truth)), "condition_frames": int(known.sum()),
        "tokenizer_psnr": float(reconstruction.psnr(truth, recon).mean()),
        "frame_prediction_psnr": float(reconstruction.psnr(truth[:, future],
                                                           generated[:, future]).mean()),
        "copy_last_frame_psnr": float(reconstruction.psnr(truth[:, future],
                                                          copied[:, future]).mean()),
        "shape_follows_truth": float(shape.mean()),
        "shape_follows_truth_by_class": {demo.CLASSES[k]: float(shape[labels == k].mean())
                                         for k in np.unique(labels)},
        "position_follows_truth": float(np.mean([n["position"] for n in nearer])),
        "fvd": fvd_figures(truth, {"frame_prediction": generated, "copy_last_frame": copied,
                                   "reconstruction": recon}, train_pattern, floor_draws, seed),
    }


def _main(fv, _) -> None:
    result = check(fv.tokenizer, fv.transformer, fv.clips, fv.samples, fv.seed, fv.train_clips,
                   fv.floor_draws)
    print(json.dumps(result, indent=2))
    scores = result["fvd"]
    print(f"tokenizer PSNR {result['tokenizer_psnr']:.2f} dB | frame prediction, generated frames: "
          f"PSNR {result['frame_prediction_psnr']:.2f} dB vs copy-last-frame "
          f"{result['copy_last_frame_psnr']:.2f} dB | of {result['num_clips']} samples, shape "
          f"nearer the truth than the copy in {100 * result['shape_follows_truth']:.0f}%, "
          f"position in {100 * result['position_follows_truth']:.0f}%")
    by_class = result["shape_follows_truth_by_class"]
    print("shape nearer the truth than the copy, per class: "
          + ", ".join(f"{name} {100 * share:.0f}%" for name, share in by_class.items()))
    floor = (f" | real train clips {scores['real_floor_mean']:.0f} (min "
             f"{scores['real_floor_min']:.0f}, max {scores['real_floor_max']:.0f}, "
             f"{scores['real_floor_draws']} sets)" if "real_floor_mean" in scores else "")
    print(f"FVD: frame prediction {scores['frame_prediction']:.0f} | copy-last-frame "
          f"{scores['copy_last_frame']:.0f} | tokenizer reconstructions "
          f"{scores['reconstruction']:.0f}{floor}")


if __name__ == "__main__":
    import sys
    sys.exit(PROGRAM.run(_main))
