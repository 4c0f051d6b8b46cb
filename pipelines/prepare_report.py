"""The data job's report: stats.json from the summed counts (`write_stats`), the check that every
split got clips (`check_clips_written`) and the one-screen summary of a run (`summary`).
"""
import json
import os

import tensorflow as tf

from pipelines import dead_letters
from pipelines.prepare_layout import shard_path, split_dir


def write_stats(counts: dict, dataset_dir: str, config_dict: dict, splits: list[str],
                num_shards: dict, failure_files: dict | None = None) -> None:
    """Turns the summed ((split, field[, key]), n) counts into stats.json."""
    stats = {"dataset": config_dict["name"], "config": config_dict, "splits": {}}
    for split in splits:
        n = num_shards.get(split, 1)
        stats["splits"][split] = dict(
            files_listed=0, videos_read=0, clips_written=0, failures=0, num_shards=n,
            clips_pattern=shard_path(dataset_dir, split, 0, n).replace("00000-of", "*-of"),
            failures_file=dead_letters.files_named(split_dir(dataset_dir, split),
                                                   (failure_files or {}).get(split, 1)),
            clips_per_class={}, videos_per_class={}, failures_by_reason={}, source_fps={})
    for (split, field, *key), n in counts.items():
        if key:
            stats["splits"][split][field][key[0]] = n
        else:
            stats["splits"][split][field] = n
    for split_stats in stats["splits"].values():
        split_stats["failures"] = sum(split_stats["failures_by_reason"].values())
    stats["totals"] = {field: sum(s[field] for s in stats["splits"].values())
                       for field in ("files_listed", "videos_read", "clips_written", "failures")}
    with tf.io.gfile.GFile(os.path.join(dataset_dir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True)


def check_clips_written(stats: dict, splits: list[str]) -> None:
    """Raises ValueError naming each of `splits` that got no clip, with its failure counts."""
    empty = []
    for split in splits:
        s = stats["splits"][split]
        if s["clips_written"] == 0:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(
                s["failures_by_reason"].items())) or "no failures"
            empty.append(f"split {split!r}: {s['files_listed']} video file(s) listed, 0 clips "
                         f"written ({reasons}; dead letters in {s['failures_file']})")
    if empty:
        raise ValueError(f"{stats['dataset']} under --config.dataset.root="
                         f"{stats['config']['root']}: " + "; ".join(empty))


def summary(stats: dict) -> str:
    """A one-screen table of the run."""
    lines = [f"{stats['dataset']}: {stats['totals']['clips_written']} clips from "
             f"{stats['totals']['videos_read']} videos in {stats.get('elapsed_s', 0):.1f} s"]
    for split, s in stats["splits"].items():
        fps = ", ".join(f"{k} fps x{v}" for k, v in sorted(s["source_fps"].items())[:4])
        lines.append(f"  {split:<10} listed {s['files_listed']:>7}  read {s['videos_read']:>7}  "
                     f"clips {s['clips_written']:>8}  shards {s['num_shards']:>5}  "
                     f"failures {s['failures']:>5}  ({fps})")
        for reason, n in sorted(s["failures_by_reason"].items()):
            lines.append(f"  {'':<10} {n:>7} {reason} -> {s['failures_file']}")
        lines.append(f"  {'':<10} {s['clips_pattern']}")
    return "\n".join(lines)


