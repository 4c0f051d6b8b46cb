"""Listing cost as the dataset grows: synthetic layouts of empty files, before and after fan-out.

Layouts (per size N): UCF-style class folders `<root>/<class>/v_<class>_<i>.avi` (101
classes), listed by the `folder` reader; and a Kinetics-style annotation CSV with N rows and N
clip files in 600 class folders, listed by the `kinetics600` reader (not fanned out yet: its
figures are "before" only).
  before:  the reader's `list_videos` of the split, as the old job ran it in one DoFn on one
           worker: wall time, peak Python memory of that worker (tracemalloc), file-system calls
           (listdir / scandir / stat / lstat) per file.
  after:   pipelines/listing on DirectRunner (in-process): wall time of the whole listing
           pipeline; the peak memory of its largest unit (`list_partition` of one class folder,
           what one worker holds) and of the driver's `partitions`; calls per file of the units.
Prints a table: rows = size, columns = time, memory, calls per file, ratio after/before.

  python bench/bench_listing.py [--sizes 10000,50000,100000]
"""
import argparse
import contextlib
import csv
import os
import shutil
import sys
import tempfile
import time
import tracemalloc

import apache_beam as beam
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from magvit.configs import get_config  # noqa: E402
from pipelines import beam_options, listing  # noqa: E402
from pipelines.datasets import folder, kinetics  # noqa: E402

CALLS = ("scandir", "stat", "lstat", "listdir")


@contextlib.contextmanager
def counted_calls():
    """Counts os.scandir / os.stat / os.lstat / tf.io.gfile.listdir calls in the block."""
    counts = dict.fromkeys(CALLS, 0)
    originals = {"scandir": os.scandir, "stat": os.stat, "lstat": os.lstat,
                 "listdir": tf.io.gfile.listdir}

    def wrap(name):
        def counted(*args, **kwargs):
            counts[name] += 1
            return originals[name](*args, **kwargs)
        return counted
    os.scandir, os.stat, os.lstat = wrap("scandir"), wrap("stat"), wrap("lstat")
    tf.io.gfile.listdir = wrap("listdir")
    try:
        yield counts
    finally:
        os.scandir, os.stat, os.lstat = (originals["scandir"], originals["stat"],
                                         originals["lstat"])
        tf.io.gfile.listdir = originals["listdir"]


def measured(fn):
    """(result, wall s, peak traced bytes, file-system calls) of fn()."""
    tracemalloc.start()
    started = time.time()
    with counted_calls() as counts:
        result = fn()
    elapsed = time.time() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, elapsed, peak, sum(counts.values())


def ucf_layout(root: str, size: int) -> None:
    for i in range(size):
        name = f"C{i % 101:03d}"
        folder_path = os.path.join(root, name)  # local-only
        os.makedirs(folder_path, exist_ok=True)  # local-only
        open(os.path.join(folder_path, f"v_{name}_{i:07d}.avi"), "wb").close()  # local-only


def kinetics_layout(root: str, size: int) -> None:
    os.makedirs(os.path.join(root, "annotations"))  # local-only
    with open(os.path.join(root, "annotations", "train.csv"), "w", newline="") as f:  # local-only
        writer = csv.writer(f)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        for i in range(size):
            label = f"class{i % 600:03d}"
            writer.writerow([label, f"yt{i:09d}", 0, 10, "train"])
            folder_path = os.path.join(root, "train", label)  # local-only
            os.makedirs(folder_path, exist_ok=True)  # local-only
            open(os.path.join(folder_path, f"yt{i:09d}_000000_000010.mp4"), "wb").close()  # local-only


def fanned_out(config) -> int:
    with beam.Pipeline(options=beam_options.pipeline_options(["--runner=DirectRunner"])) as p:
        listed = listing.list_videos(p, config)
        _ = listed.videos | beam.combiners.Count.Globally() | beam.Map(print_count)
    return 0


def print_count(n):
    print(f"    (fanned-out listing: {n} videos)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000,100000")
    args = parser.parse_args()
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        work = tempfile.mkdtemp(prefix="bench-listing-")  # local-only
        try:
            root = os.path.join(work, "ucf")  # local-only
            ucf_layout(root, size)
            config = get_config("tiny").dataset
            config.name, config.root, config.split = "folder", root, "all"
            videos, t0, m0, c0 = measured(lambda: list(folder.list_videos(config, "all")))
            assert len(videos) == size, len(videos)
            units, _, m_driver, c_driver = measured(lambda: folder.partitions(config))
            largest = max(units, key=lambda u: len(folder.list_partition(config, u)[3]))
            _, _, m_unit, _ = measured(lambda: folder.list_partition(config, largest))
            unit_calls = 0
            for unit in units:
                _, _, _, calls = measured(lambda u=unit: folder.list_partition(config, u))
                unit_calls += calls
            started = time.time()
            fanned_out(config)
            t1 = time.time() - started
            rows.append(("folder", size, t0, t1, m0, max(m_unit, m_driver),
                         c0 / size, (c_driver + unit_calls) / size))
            root = os.path.join(work, "kinetics")  # local-only
            kinetics_layout(root, size)
            config = get_config("tiny").dataset
            config.name, config.root, config.split = "kinetics600", root, "train"
            videos, tk, mk, ck = measured(lambda: list(kinetics.list_videos(config, "train")))
            assert len(videos) == size, len(videos)
            rows.append(("kinetics600", size, tk, None, mk, None, ck / size, None))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'layout':<12} {'files':>7} {'before s':>9} {'after s':>8} {'before MiB':>11} "
          f"{'after MiB':>10} {'mem ratio':>10} {'calls/file before':>18} {'after':>6}")
    for layout, size, t0, t1, m0, m1, c0, c1 in rows:
        fmt = (lambda v, spec: f"{v:{spec}}" if v is not None else "-")
        print(f"{layout:<12} {size:>7} {t0:>9.2f} {fmt(t1, '8.2f'):>8} {m0 / 2**20:>11.2f} "
              f"{fmt(m1 and m1 / 2**20, '10.3f'):>10} "
              f"{fmt(m1 and m1 / m0, '10.4f'):>10} {c0:>18.3f} {fmt(c1, '6.3f'):>6}")
    print("before: one worker lists the split; after: the largest unit one worker lists (and "
          "the driver's partitions); kinetics600 is not fanned out yet")


if __name__ == "__main__":
    main()
