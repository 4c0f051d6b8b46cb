"""Dead letters of the Beam jobs, written in bounded memory: `WriteDeadLetters`.

A job's failures ((split, JSON line) pairs) go to `<folder of split>/failures-XXXXX-of-NNNNN.jsonl`.
N grows with the split's failure count (`file_count`: one file per `lines_per_file` lines, at
least one, so a split without failures still gets its empty file), and a line goes to file
crc32(line) mod N. Each file is sorted and written by the worker that owns it, so no worker holds
more than about `lines_per_file` lines (never a split's whole list, as a `ToList` would), and the
files are byte-identical under any runner and worker count. Small runs get one file,
`failures-00000-of-00001.jsonl`.
"""
import math
import os
import zlib

import apache_beam as beam
import tensorflow as tf

from pipelines.atomic_files import atomic_path

PREFIX = "failures"
LINES_PER_FILE = 100_000   # ~30 MB of JSON lines, sorted in one worker's memory


def file_count(lines: int, lines_per_file: int = LINES_PER_FILE) -> int:
    return max(1, math.ceil(lines / lines_per_file))


def file_path(folder: str, index: int, count: int) -> str:
    return os.path.join(folder, f"{PREFIX}-{index:05d}-of-{count:05d}.jsonl")


def files_named(folder: str, count: int) -> str:
    """The split's dead-letter file, or the pattern of its files when there are several."""
    if count == 1:
        return file_path(folder, 0, 1)
    return file_path(folder, 0, count).replace("00000-of", "*-of")


def _file_of(split: str, line: str, counts: dict) -> tuple[str, int]:
    return split, zlib.crc32(line.encode()) % counts.get(split, 1)


class _WriteFile(beam.DoFn):
    """((split, index), {"keys": [...], "lines": [JSON line]}) -> that dead-letter file, sorted."""

    def __init__(self, folders: dict):
        self.folders = folders

    def process(self, element, counts):
        (split, index), grouped = element
        path = file_path(self.folders[split], index, counts.get(split, 1))
        with atomic_path(path) as temporary:
            with tf.io.gfile.GFile(temporary, "w") as f:
                f.write("")   # created even when it gets no line
                for line in sorted(grouped["lines"]):
                    f.write(line + "\n")
        yield split, index


class WriteDeadLetters(beam.PTransform):
    """(split, JSON line) pairs -> each split's dead-letter files (see the module docstring).

    `folders`: {split: folder}; every split in it gets its files. The output is the PCollection
    of (split, number of files) for every split of `folders`; `line_counts` (set by `expand`) is
    that of (split, failure count), for the splits that had failures."""

    def __init__(self, folders: dict, lines_per_file: int = LINES_PER_FILE):
        super().__init__()
        self.folders, self.lines_per_file = dict(folders), lines_per_file
        self.line_counts = None

    def expand(self, lines):
        per_file = self.lines_per_file
        self.line_counts = (lines
                            | "SplitOfLine" >> beam.Map(lambda kv: (kv[0], 1))
                            | "LinesPerSplit" >> beam.CombinePerKey(sum))
        splits = lines.pipeline | "Splits" >> beam.Create(sorted(self.folders))
        counts = beam.pvalue.AsDict(self.line_counts)
        files = splits | "FileCount" >> beam.Map(
            lambda split, n: (split, file_count(n.get(split, 0), per_file)), counts)
        files_dict = beam.pvalue.AsDict(files)
        keys = splits | "FileKeys" >> beam.FlatMap(
            lambda split, n: [((split, i), None) for i in range(n[split])], files_dict)
        keyed = lines | "KeyByFile" >> beam.Map(
            lambda kv, n: (_file_of(kv[0], kv[1], n), kv[1]), files_dict)
        _ = ({"keys": keys, "lines": keyed}
             | "GroupFiles" >> beam.CoGroupByKey()
             | "WriteFiles" >> beam.ParDo(_WriteFile(self.folders), files_dict))
        return files
