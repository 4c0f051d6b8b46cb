"""Clips/s of the pre-tokenization job on DirectRunner vs a plain loop calling Tokenizer.encode.

    .venv/bin/python bench/bench_pretokenize.py [--clips=N] [--batch_size=B] [--tokenizer=DIR]

Both read the same clip TFRecords and encode with the same batch size; both times include loading
the tokenizer and compiling its encoder once, and the job's time includes writing token records,
dead letters and stats. Without --tokenizer, an untrained tiny tokenizer (random weights, same
cost) is used. Measured `--repeats` times, alternating, so neither side pays the process's
one-time start-up alone; the ratio compares the best times. Target: job >= 0.9 x loop.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from magvit.configs import get_config  # noqa: E402
from magvit.tokenizer.api import Tokenizer, save_random_tokenizer  # noqa: E402
from pipelines import pretokenize  # noqa: E402
from tfrecords_schemas import clip as clip_schema  # noqa: E402


def write_clips(path: str, n: int, shape) -> None:
    rng = np.random.RandomState(0)
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(n):
            clip = clip_schema.Clip(frames=rng.randint(0, 256, (*shape, 3), dtype=np.uint8),
                                    fps=8.0, label=i % 4, label_name="c", video_id=f"v{i}",
                                    clip_start=0, dataset="bench")
            writer.write(clip_schema.build_clip(clip).SerializeToString())


def plain_loop(pattern: str, tokenizer_dir: str, batch_size: int) -> int:
    tokenizer = Tokenizer.load(tokenizer_dir)
    shape = tuple(tokenizer.clip_shape)
    batches = (tf.data.TFRecordDataset(tf.io.gfile.glob(pattern))
               .map(lambda s: clip_schema.parse_clip(s, shape=shape)["frames"])
               .batch(batch_size))
    n = 0
    for frames in batches.as_numpy_iterator():
        padded = np.concatenate([frames, np.repeat(frames[-1:], batch_size - len(frames), 0)])
        tokenizer.encode(padded)[:len(frames)]
        n += len(frames)
    return n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=1024)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--tokenizer", default="")
    parser.add_argument("--repeats", type=int, default=2,
                        help="rounds of both measurements, alternating; the ratio takes the best")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench_pretokenize_")
    config = get_config("tiny")
    tokenizer_dir = args.tokenizer or save_random_tokenizer(os.path.join(work, "tok"), config)
    shape = Tokenizer.load(tokenizer_dir).clip_shape
    pattern = os.path.join(work, "clips-00000-of-00001.tfrecord")
    write_clips(pattern, args.clips, shape)
    print(f"clips {args.clips} of {'x'.join(map(str, shape))}, batch {args.batch_size}")
    loop_s, job_s = [], []
    for _ in range(args.repeats):
        start = time.time()
        n_loop = plain_loop(pattern, tokenizer_dir, args.batch_size)
        loop_s.append(time.time() - start)
        start = time.time()
        stats = pretokenize.run_pretokenize({"train": pattern}, tokenizer_dir,
                                            os.path.join(work, "out"), batch_size=args.batch_size,
                                            beam_args=["--runner=DirectRunner"])
        job_s.append(time.time() - start)
        assert stats["train"]["clips"] == n_loop == args.clips
        print(f"plain loop : {n_loop / loop_s[-1]:8.1f} clips/s ({loop_s[-1]:.1f} s)")
        print(f"Beam job   : {args.clips / job_s[-1]:8.1f} clips/s ({job_s[-1]:.1f} s, DirectRunner)")
    print(f"ratio      : {min(loop_s) / min(job_s):.2f} (best of {args.repeats} each; target >= 0.9)")


if __name__ == "__main__":
    main()
