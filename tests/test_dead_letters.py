"""Dead letters in bounded memory (pipelines/dead_letters.py): files that grow in number with the
failure count, each sorted, together exactly the lines given, on a remote (ram://) store."""
import json
import uuid

import apache_beam as beam
import tensorflow as tf

from pipelines import beam_options, dead_letters


def _run(lines, folders, lines_per_file):
    with beam.Pipeline(options=beam_options.pipeline_options(["--runner=DirectRunner"])) as p:
        _ = (p | beam.Create(lines)
             | dead_letters.WriteDeadLetters(folders, lines_per_file=lines_per_file))


def _read(path):
    with tf.io.gfile.GFile(path) as f:
        return f.read()


def test_files_split_by_count_sorted_and_complete():
    root = f"ram://dead-letters-{uuid.uuid4().hex}"
    folders = {"train": f"{root}/train", "test": f"{root}/test"}
    lines = [("train", json.dumps({"path": f"v{i:02d}.mp4", "reason": "decode_error"}))
             for i in range(7)]
    _run(lines, folders, lines_per_file=3)
    train = sorted(tf.io.gfile.glob(f"{root}/train/failures-*.jsonl"))
    assert [p.rsplit("/", 1)[1] for p in train] == [
        f"failures-{i:05d}-of-00003.jsonl" for i in range(3)]
    contents = [_read(p).splitlines() for p in train]
    assert all(c == sorted(c) for c in contents)
    assert sorted(line for c in contents for line in c) == sorted(line for _, line in lines)
    assert tf.io.gfile.glob(f"{root}/test/*") == [f"{root}/test/failures-00000-of-00001.jsonl"]
    assert _read(f"{root}/test/failures-00000-of-00001.jsonl") == ""   # no failures: empty file
    assert not tf.io.gfile.glob(f"{root}/train/*.tmp-*")                  # no temporaries left
    # the same lines in another order: the same bytes
    again = f"ram://dead-letters-{uuid.uuid4().hex}"
    _run(lines[::-1], {"train": f"{again}/train", "test": f"{again}/test"}, lines_per_file=3)
    assert [_read(p.replace(root, again)) for p in train] == [_read(p) for p in train]


def test_file_names():
    assert dead_letters.file_count(0) == 1 and dead_letters.file_count(100_001) == 2
    assert dead_letters.files_named("d", 1) == "d/failures-00000-of-00001.jsonl"
    assert dead_letters.files_named("d", 4) == "d/failures-*-of-00004.jsonl"
