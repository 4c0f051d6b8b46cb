"""tf.data input of pre-tokenized clips (token TFRecords, `tfrecords_schemas.tokens`).

Reuses `magvit.data` for the file order, shuffling and the exactly resumable position; this module
only says how a token record is parsed and which precomputed condition grids the records carry.
"""
import json
import os

import tensorflow as tf

from magvit import data
from tfrecords_schemas import tokens as token_schema


STATS_FILE = "stats.json"    # written by pipelines.pretokenize beside the shards


def token_parser(grid_shape, conditions: tuple[str, ...] = (), tokenizer_id: str | None = None):
    """Parser of one token record: `tokens` int32 [t, h, w], `label` int32, `clip_id`, and
    `condition/<task>` int32 [t, h, w] for each task in `conditions`. With `tokenizer_id`, a record
    of another tokenizer fails (InvalidArgumentError) instead of being trained on."""
    grid_shape = tuple(int(s) for s in grid_shape)

    def parse(serialized):
        record = token_schema.parse_tokens(serialized, grid_shape, tuple(conditions),
                                           tokenizer_id=tokenizer_id)
        out = {"tokens": record["tokens"], "label": tf.cast(record["label"], tf.int32),
               "clip_id": record["clip_id"]}
        for task in conditions:
            out[token_schema.CONDITION_PREFIX + task] = record[token_schema.CONDITION_PREFIX + task]
        return out
    return parse


def first_record(path: str, flag: str = "data") -> tf.train.Example:
    """The first record of one token file (checked to be a token record)."""
    for serialized in tf.data.TFRecordDataset([path]).take(1):
        try:
            return token_schema.check_tokens(serialized.numpy())
        except ValueError as e:
            raise ValueError(f"--{flag}: {path} does not hold token records ({e})") from e
    return None


def _record_info(example: tf.train.Example, tasks: tuple[str, ...]) -> dict:
    features = example.features.feature
    return dict(
        grid_shape=tuple(features["grid_shape"].int64_list.value),
        codebook_size=int(features["codebook_size"].int64_list.value[0]),
        tokenizer_id=features["tokenizer_id"].bytes_list.value[0].decode(),
        conditions=tuple(t for t in tasks if token_schema.CONDITION_PREFIX + t in features))


def _stats_tokenizer(path: str) -> str | None:
    """The tokenizer id in the pre-tokenization stats.json beside a token file, if there is one."""
    stats = os.path.join(os.path.dirname(path), STATS_FILE)
    if not tf.io.gfile.exists(stats):
        return None
    with tf.io.gfile.GFile(stats) as f:
        return json.load(f).get("tokenizer_id")


def describe(pattern: str, tasks: tuple[str, ...], flag: str = "data") -> dict:
    """What the token records of `pattern` carry: grid shape, codebook size, tokenizer id, and
    which of `tasks` have precomputed condition grids.

    Every file is checked (its first record, and the stats.json beside it): files that disagree
    (e.g. a glob mixing two tokenizers' outputs) raise ValueError naming both files. Each record
    read later is checked again while parsing (`token_iterator(..., tokenizer_id=...)`)."""
    files = data.list_files(pattern, flag)
    info, first = None, None
    for path in files:
        example = first_record(path, flag)
        if example is None:
            continue
        this = _record_info(example, tasks)
        from_stats = _stats_tokenizer(path)
        if from_stats is not None and from_stats != this["tokenizer_id"]:
            raise ValueError(f"--{flag}: {path} holds tokens of tokenizer {this['tokenizer_id']} "
                             f"but the stats.json beside it says {from_stats}: the folder mixes "
                             "two pre-tokenization runs")
        if info is None:
            info, first = this, path
        elif this != info:
            differs = [k for k in info if info[k] != this[k]]
            raise ValueError(
                f"--{flag}={pattern!r} mixes token files that cannot be trained on together: "
                f"{first} has " + ", ".join(f"{k}={info[k]}" for k in differs) + f"; {path} has "
                + ", ".join(f"{k}={this[k]}" for k in differs))
    if info is None:
        raise ValueError(f"--{flag}={pattern!r}: the {len(files)} file(s) it matches hold no "
                         "record")
    return info


def token_iterator(pattern: str, grid_shape, batch_size: int, *, conditions=(), seed: int = 0,
                   shuffle_buffer: int = 1024, position=None, train: bool = True,
                   flag: str = "data", tokenizer_id: str | None = None) -> data.ResumableIterator:
    """Numpy batches of token records, resumable from `position` (see magvit.data); with
    `tokenizer_id`, every record is checked to come from that tokenizer."""
    parser = token_parser(grid_shape, conditions, tokenizer_id)
    return data.ResumableIterator(pattern, parser, batch_size,
                                  seed=seed, shuffle_buffer=shuffle_buffer, train=train,
                                  position=position, flag=flag)
