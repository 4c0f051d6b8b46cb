"""Listing cost as the dataset grows: synthetic layouts of empty files, before and after fan-out.

Layouts (per size N, split `train`):
  ucf101       UCF-style class folders `UCF-101/<Class>/v_<Class>_gNNNNNNN_c01.avi` (101 classes)
               and the official label files (classInd.txt, trainlist01.txt listing all N);
  kinetics600  a Kinetics-style annotation CSV of N rows and its N clips in 600 class folders
               (`train/<label>/<youtube_id>_000000_000010.mp4`).
  before:  the reader's one-split `list_videos` in one process, as the old job ran it in one DoFn
           on one worker before any Reshuffle (a walk of the whole tree and the label file):
           wall time, peak Python memory (tracemalloc), file-system calls per file.
  after:   the fanned-out listing (pipelines/listing.py). The driver only builds the units
           (`file_roots`, `row_units`, the CSV header: its time, memory, calls); every folder
           unit a worker runs (a folder level, a folder listed whole) is run here one after the
           other, each measured on its own: the largest unit's time and memory are what the
           slowest worker needs (with W workers the listing takes about max(total / W, largest
           unit)). The label file's rows, streamed in one process here ("rows s", "rows MiB"):
           the job reads them with Beam's ReadFromText, split by byte ranges over workers. The
           calls of all units and of the rows, over N, are the calls per file. Last, the whole
           listing pipeline on DirectRunner (one process, so no parallelism: its wall time is
           the total work plus Beam's join of rows and files, for reference).
Times and memory are taken under tracemalloc (which slows Python by a few times), before and
after alike.
Calls counted: os.scandir / os.stat / os.lstat and tf.io.gfile listdir / isdir / exists / stat /
GFile (the same request on an object store: a listing page, a metadata request, a read).
Prints a table: rows = layout and size, columns = time, memory, calls per file, ratios.

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
from pipelines import beam_options, datasets, listing  # noqa: E402
from pipelines.datasets import common  # noqa: E402

OS_CALLS = ("scandir", "stat", "lstat")
GFILE_CALLS = ("listdir", "isdir", "exists", "stat", "GFile")


@contextlib.contextmanager
def counted_calls():
    """Counts the file-system calls above made in the block: {name: calls}."""
    counts = {}
    patched = [(os, name) for name in OS_CALLS] + [(tf.io.gfile, name) for name in GFILE_CALLS]
    originals = [getattr(module, name) for module, name in patched]

    def wrap(label, original):
        def counted(*args, **kwargs):
            counts[label] = counts.get(label, 0) + 1
            return original(*args, **kwargs)
        return counted
    for (module, name), original in zip(patched, originals):
        setattr(module, name, wrap(f"{module.__name__}.{name}", original))
    try:
        yield counts
    finally:
        for (module, name), original in zip(patched, originals):
            setattr(module, name, original)


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


def _touch(path: str) -> None:
    open(path, "wb").close()  # local-only


def ucf_layout(root: str, size: int) -> None:
    lists = os.path.join(root, "ucfTrainTestlist")  # local-only
    os.makedirs(lists)  # local-only
    names = [f"C{c:03d}" for c in range(101)]
    with open(os.path.join(lists, "classInd.txt"), "w") as f:  # local-only
        f.write("".join(f"{c + 1} {name}\n" for c, name in enumerate(names)))
    with open(os.path.join(lists, "trainlist01.txt"), "w") as f:  # local-only
        for i in range(size):
            name = names[i % 101]
            relative = f"{name}/v_{name}_g{i:07d}_c01.avi"
            f.write(f"{relative} {i % 101 + 1}\n")
            os.makedirs(os.path.join(root, "UCF-101", name), exist_ok=True)  # local-only
            _touch(os.path.join(root, "UCF-101", relative))


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
            _touch(os.path.join(folder_path, f"yt{i:09d}_000000_000010.mp4"))


LAYOUTS = {"ucf101": ucf_layout, "kinetics600": kinetics_layout}


def driver_units(reader, config):
    """What the driver builds: the file roots, the label-file units and their headers."""
    units = [u for s in common.split_names(config) for u in reader.row_units(config, s)]
    return reader.file_roots(config), units, [reader.row_header(u) for u in units]


def worker_units(roots):
    """Runs every folder unit a worker would, one at a time: (units, largest s, largest bytes,
    calls)."""
    expand = listing._ExpandFolder(common.VIDEO_EXTENSIONS)   # pylint: disable=protected-access
    pending = [(base, base, levels) for base, levels in roots]
    count, largest_s, largest_bytes, calls = 0, 0.0, 0, 0

    def account(elapsed, peak, n):
        nonlocal count, largest_s, largest_bytes, calls
        count, calls = count + 1, calls + n
        largest_s, largest_bytes = max(largest_s, elapsed), max(largest_bytes, peak)
    while pending:
        unit = pending.pop()
        out, elapsed, peak, n = measured(lambda u=unit: list(expand.process(u)))
        account(elapsed, peak, n)
        pending.extend(item for item in out if isinstance(item, tuple) and len(item) == 3)
    return count, largest_s, largest_bytes, calls


def rows_and_classes(reader, config, row_units) -> int:
    """Streams every label file's rows (counted, not kept) and builds the class index."""
    rows = sum(1 for unit in row_units for _ in common.rows_of(reader, config, unit))
    reader.class_index(config, common.split_names(config))
    return rows


def pipeline_seconds(config) -> float:
    started = time.time()
    with beam.Pipeline(options=beam_options.pipeline_options(["--runner=DirectRunner"])) as p:
        listed = listing.list_videos(p, config)
        _ = listed.videos | beam.combiners.Count.Globally() | beam.Map(print_count)
    return time.time() - started


def print_count(n):
    print(f"    (fanned-out listing: {n} videos)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000,100000")
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    args = parser.parse_args()
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for name in args.layouts.split(","):
            work = tempfile.mkdtemp(prefix="bench-listing-")  # local-only
            try:
                LAYOUTS[name](work, size)
                config = get_config("tiny").dataset
                config.name, config.root, config.split = name, work, "train"
                reader = datasets.get_reader(name)
                videos, t0, m0, c0 = measured(lambda: list(reader.list_videos(config, "train")))
                assert len(videos) == size and all(isinstance(v, common.Video) for v in videos)
                del videos
                (roots, row_units, _), td, md, cd = measured(lambda: driver_units(reader, config))
                units, tu, mu, cu = worker_units(roots)
                count, tr, mr, cr = measured(lambda: rows_and_classes(reader, config, row_units))
                assert count == size, count
                tp = pipeline_seconds(config)
                rows.append((name, size, t0, m0, c0, td, md, units, tu, mu, tr, mr,
                             (cd + cu + cr), tp))
                print(f"  {name} {size}: done", flush=True)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'layout':<12} {'files':>7} | {'before s':>8} {'MiB':>6} {'calls/file':>10} | "
          f"{'driver s':>8} {'driver MiB':>10} {'units':>5} {'largest unit s':>14} "
          f"{'unit MiB':>8} {'rows s':>6} {'rows MiB':>8} {'calls/file':>10} {'pipeline s':>10} "
          f"| {'worker mem/before':>17}")
    for name, size, t0, m0, c0, td, md, units, tu, mu, tr, mr, c1, tp in rows:
        print(f"{name:<12} {size:>7} | {t0:>8.2f} {m0 / 2**20:>6.1f} {c0 / size:>10.4f} | "
              f"{td:>8.3f} {md / 2**20:>10.3f} {units:>5} {tu:>14.3f} {mu / 2**20:>8.2f} "
              f"{tr:>6.2f} {mr / 2**20:>8.2f} {c1 / size:>10.4f} {tp:>10.1f} "
              f"| {max(md, mu, mr) / m0:>17.4f}")
    print("before: one process lists the split (what one worker did); after: the driver builds "
          "the units, each worker runs folder units (largest shown); rows: the label file "
          "streamed in one process (the job splits it over workers); pipeline: the whole "
          "fanned-out listing on DirectRunner in one process")


if __name__ == "__main__":
    main()
