"""Clips per second per core: the Beam prepare job vs. a plain PyAV decode + resize loop.

Writes `--videos` synthetic 320x240 25 fps H.264 videos (moving texture), then measures
  loop:  one process decodes each video with PyAV, scales the shorter side to 128 and centre-crops
         (magvit.video_io.iter_frames + clip_sampling.center_crop): the practical limit;
  beam:  pipelines.prepare.run_prepare on DirectRunner (in-process, one worker), 16x128x128 clips,
         `all` policy, for each `--image_formats` (encoding + TFRecord writing included; PNG at the
         config's default `png_compression`, or `--png_compression`).
"Per core" = clips / CPU seconds of the process (all its threads), so a busy shared machine and
FFmpeg's decoding threads do not skew the figures. Prints one line per measurement and the ratio.
Extra figures, to tell Beam's own cost from encoding's:
  encode loop:  the job's work per video without Beam (reader, clip_sampling, build_clip,
                serialization) in one process, for each image format;
  beam/(encode loop): what Beam itself (graph, grouping and shard writing) costs;
  fixed cost: CPU seconds of a one-video job beyond its encoding work (graph construction, runner
                start-up, stats): paid once per run, so the figures also show the ratio without it.
  peak temporary disk / output: the most bytes of temporary files (shards being written under
                `*.tmp-*` names, part files of older versions under `_work/`) seen at once
                during the beam run (polled every 0.2 s), over the bytes of the finished shards;
                a shard being written counts, so locally it is about workers / shards. peak disk
                / output: all files at once over the finished output (1.0: never a second copy).
Temporary disk as the data grows (`--disk_sizes`, e.g. 108x150,1000x20: videos x frames; short
videos keep the 1,000-video run to minutes): one PNG beam run per size into a local folder (shards
renamed from a temporary name when complete) and one into ram://, the stand-in for a bucket
(shards written under their final name, as on gs://), each polled as above. On gs:// itself the
object being uploaded is staged by TensorFlow's GCS client on the worker's local disk (one shard
per worker, not in the bucket): ram:// keeps it in memory, so the table cannot show it.
The one-video job also warms Beam up (as the loop is, by its first run), so one-time imports of the
runner are not charged to the first format measured. The default size (108 videos of 6 s, 972
clips) keeps the fixed cost to a few percent; real datasets have 10^4-10^6 videos.

  python bench/bench_prepare.py [--videos 108 --frames 150 --image_formats png,jpeg --repeats 2]
  python bench/bench_prepare.py --videos 0 --disk_sizes 108x150,1000x20   (the disk table only)
"""
import argparse
import collections
import os
import resource
import shutil
import tempfile
import threading
import time
import uuid

import numpy as np
import tensorflow as tf
from PIL import Image

from magvit import video_io
from magvit.configs import get_config
from pipelines import clip_sampling, datasets, prepare
from tfrecords_schemas import clip as clip_schema


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def write_videos(root: str, count: int, frames: int) -> list[str]:
    paths = []
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    for i in range(count):
        rng = np.random.RandomState(i)
        texture = np.asarray(Image.fromarray(rng.randint(0, 255, (60, 80, 3)).astype(np.uint8)).resize(
            (320, 240), Image.BICUBIC)).astype(np.float32)
        video = np.empty((frames, 240, 320, 3), np.uint8)
        for t in range(frames):
            wave = 25 * np.sin((xx + yy + 5 * t) / 15.0)[..., None]
            video[t] = np.clip(np.roll(texture, 2 * t, axis=1) + wave, 0, 255)
        path = os.path.join(root, "bench", f"video_{i:03d}.mp4")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        video_io.write_video(path, video, fps=25, crf=23)
        paths.append(path)
    return paths


def decode_loop(paths: list[str], config) -> int:
    """Decode + resize + crop every frame; returns the clips those frames make."""
    clips = 0
    for path in paths:
        frames = [clip_sampling.center_crop(f, config.resolution)
                  for f in video_io.iter_frames(path, config.resolution, config.resize_filter)]
        clips += len(clip_sampling.clip_starts("all", len(frames), config.num_frames, config.frame_stride))
    return clips


def encode_loop(config) -> int:
    """MakeClips' work without Beam: read, cut and encode every clip; returns the clips made."""
    reader, clips = datasets.get_reader(config.name), 0
    for video in reader.list_videos(config, config.split):
        for source in reader.read(video, config):
            for clip in clip_sampling.sample_clips(source, config):
                clip_schema.build_clip(clip, config.image_format, config.jpeg_quality,
                                       config.png_compression).SerializeToString(deterministic=True)
                clips += 1
    return clips


def measure(name: str, fn) -> tuple[float, int]:
    """(clips per CPU second, clips) of `fn()`, which returns the clips it made."""
    cpu, wall = cpu_seconds(), time.time()
    clips = fn()
    cpu, wall = cpu_seconds() - cpu, time.time() - wall
    rate = clips / cpu
    print(f"{name:<28} {clips:5d} clips  {wall:6.2f} s wall  {cpu:6.2f} s CPU  "
          f"{rate:7.2f} clips/s/core  ({clips / wall:6.2f} clips/s wall)", flush=True)
    return rate, clips


class TemporaryDiskPeak:
    """Polls the files under `folder` (local or ram://) while the block runs: the peak bytes of
    temporary ones and of all."""

    def __init__(self, folder: str, interval: float = 0.2):
        self.folder, self.interval, self.peak, self.peak_total = folder, interval, 0, 0
        self._stop = threading.Event()

    def _walk(self):
        if "://" in self.folder:
            return tf.io.gfile.walk(self.folder) if tf.io.gfile.exists(self.folder) else []
        return os.walk(self.folder)  # local-only

    def _size(self, path: str) -> int:
        if "://" in path:
            return tf.io.gfile.stat(path).length
        return os.path.getsize(path)  # local-only

    def _bytes(self) -> tuple[int, int]:
        """(bytes of temporary files, bytes of all files) under the folder now."""
        temporary = total = 0
        for directory, _, names in self._walk():
            for name in names:
                try:
                    size = self._size(os.path.join(directory, name))
                except (OSError, tf.errors.OpError):   # renamed or removed meanwhile
                    continue
                total += size
                if ".tmp-" in name or f"{os.sep}_work" in directory:
                    temporary += size
        return temporary, total

    def _poll(self):
        while not self._stop.wait(self.interval):
            temporary, total = self._bytes()
            self.peak, self.peak_total = max(self.peak, temporary), max(self.peak_total, total)

    def __enter__(self):
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()


def output_bytes(folder: str) -> int:
    if "://" in folder:
        return sum(tf.io.gfile.stat(p).length for p in tf.io.gfile.glob(f"{folder}/*/*/*.tfrecord"))
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(folder)  # local-only
               for n in names if n.endswith(".tfrecord"))


def disk_table(work: str, sizes: str) -> None:
    """Peak temporary disk / output per size, local and object-store output (see the docstring)."""
    rows = []
    for size in sizes.split(","):
        videos, frames = (int(n) for n in size.split("x"))
        root = os.path.join(work, f"disk_{videos}")  # local-only
        write_videos(root, videos, frames)
        config = get_config("ucf101_b").dataset
        config.name, config.root, config.split, config.image_format = "folder", root, "all", "png"
        for store, out in (("local", os.path.join(work, f"disk_out_{videos}")),  # local-only
                           ("ram://", f"ram://bench-prepare-{uuid.uuid4().hex}")):
            started = time.time()
            with TemporaryDiskPeak(out) as disk:
                stats = prepare.run_prepare(config, out, ["--direct_num_workers=1"])
            output = output_bytes(out)
            rows.append((videos, frames, store, stats["totals"]["clips_written"],
                         stats["splits"]["all"]["num_shards"], output, disk.peak, disk.peak_total,
                         time.time() - started))
            print(f"  {videos} videos, {store}: {rows[-1][3]} clips in {rows[-1][4]} shards, "
                  f"{rows[-1][-1]:.0f} s", flush=True)
            if "://" in out:
                tf.io.gfile.rmtree(out)
            else:
                shutil.rmtree(out)
        shutil.rmtree(root)
    print("\npeak temporary disk / output (PNG, one worker; temporary = bytes under temporary "
          "names, the shard being written included)")
    print(f"{'videos':>6} {'frames':>6} {'output':>7} {'clips':>6} {'shards':>6} {'shard MiB':>9} "
          f"{'output MiB':>10} {'peak tmp MiB':>12} {'peak tmp/output':>15} {'peak all/output':>15} "
          f"{'time s':>7}")
    for videos, frames, store, clips, shards, output, peak, total, elapsed in rows:
        print(f"{videos:>6} {frames:>6} {store:>7} {clips:>6} {shards:>6} "
              f"{output / shards / 2**20:>9.1f} {output / 2**20:>10.1f} {peak / 2**20:>12.1f} "
              f"{peak / output:>15.3f} {total / output:>15.3f} {elapsed:>7.0f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=108)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--image_formats", default="png,jpeg")
    parser.add_argument("--png_compression", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2,
                        help="rounds of all measurements; the summary takes each one's best")
    parser.add_argument("--disk_sizes", default="",
                        help="e.g. 108x150,1000x20 (videos x frames): the temporary disk table")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench_prepare_")
    try:
        if args.disk_sizes:
            disk_table(work, args.disk_sizes)
        if args.videos:
            throughput(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def throughput(work: str, args) -> None:
    """Clips/s per core of the loop, the encode loop and the beam job (see the docstring)."""
    paths = write_videos(os.path.join(work, "videos"), args.videos, args.frames)
    config = get_config("ucf101_b").dataset
    config.name, config.root, config.split = "folder", os.path.join(work, "videos"), "all"
    if args.png_compression is not None:
        config.png_compression = args.png_compression
    print(f"{args.videos} videos of {args.frames} frames, 320x240 25 fps -> "
          f"{config.num_frames}x{config.resolution}x{config.resolution} clips; "
          f"PNG compression level {config.png_compression}")
    one = config.copy_and_resolve_references()
    one.root = os.path.join(work, "one_video")
    os.makedirs(os.path.join(one.root, "bench"))
    shutil.copy(paths[0], os.path.join(one.root, "bench"))
    measure("loop: decode+resize (warm-up)", lambda: decode_loop(paths, config))
    prepare.run_prepare(one, os.path.join(work, "out_warm_up"), ["--direct_num_workers=1"])
    best, fixed = collections.defaultdict(float), collections.defaultdict(lambda: float("inf"))
    for _ in range(args.repeats):
        rate, clips = measure("loop: decode+resize", lambda: decode_loop(paths, config))
        best["loop"] = max(best["loop"], rate)
        for image_format in args.image_formats.split(","):
            config.image_format = one.image_format = image_format
            rate, _ = measure(f"encode loop ({image_format})", lambda: encode_loop(config))
            best["encode", image_format] = max(best["encode", image_format], rate)
            with TemporaryDiskPeak(os.path.join(work, "out")) as disk:
                rate, _ = measure(f"beam DirectRunner ({image_format})", lambda: prepare.run_prepare(
                    config, os.path.join(work, "out"), ["--direct_num_workers=1"])["totals"]["clips_written"])
            best["beam", image_format] = max(best["beam", image_format], rate)
            output = output_bytes(os.path.join(work, "out"))
            ratio = disk.peak / output
            best["disk", image_format] = max(best["disk", image_format], ratio)
            best["total", image_format] = max(best["total", image_format],
                                              disk.peak_total / output)
            print(f"  peak temporary disk {disk.peak / 2**20:.1f} MiB = {ratio:.3f} of the "
                  f"output ({output / 2**20:.1f} MiB); peak disk in all "
                  f"{disk.peak_total / output:.3f} of the output")
            cpu = cpu_seconds()
            clips_one = prepare.run_prepare(one, os.path.join(work, "out_one"),
                                            ["--direct_num_workers=1"])["totals"]["clips_written"]
            fixed[image_format] = min(fixed[image_format], cpu_seconds() - cpu
                                      - clips_one / best["encode", image_format])
    loop = best["loop"]
    print(f"best of {args.repeats}: loop {loop:.1f} clips/s/core")
    for image_format in args.image_formats.split(","):
        beam, encoded = best["beam", image_format], best["encode", image_format]
        steady = clips / (clips / beam - fixed[image_format])
        print(f"  {image_format}: beam {beam:.1f} clips/s/core, encode loop {encoded:.1f}; "
              f"fixed cost of a run {fixed[image_format]:.2f} s CPU")
        print(f"  {image_format}: beam/loop per core {beam / loop:.2f}   without the fixed cost "
              f"{steady / loop:.2f}   beam/(encode loop) {beam / encoded:.2f}")
    print(f"\n{'videos':>6} {'format':>6} {'clips':>6} {'beam clips/s/core':>18} "
          f"{'beam/loop':>10} {'peak tmp disk/output':>21} {'peak disk/output':>17}")
    for image_format in args.image_formats.split(","):
        beam = best["beam", image_format]
        print(f"{args.videos:>6} {image_format:>6} {clips:>6} {beam:>18.2f} {beam / loop:>10.2f} "
              f"{best['disk', image_format]:>21.3f} {best['total', image_format]:>17.3f}")


if __name__ == "__main__":
    main()
