"""tf.data input of pre-tokenized clips (token TFRecords, `tfrecords_schemas.tokens`).

Reuses `magvit.data` for the file order, shuffling and the exactly resumable position; this module
only says how a token record is parsed and which precomputed condition grids the records carry.
"""
import tensorflow as tf

from magvit import data
from tfrecords_schemas import tokens as token_schema


def token_parser(grid_shape, conditions: tuple[str, ...] = ()):
    """Parser of one token record: `tokens` int32 [t, h, w], `label` int32, `clip_id`, and
    `condition/<task>` int32 [t, h, w] for each task in `conditions`."""
    grid_shape = tuple(int(s) for s in grid_shape)

    def parse(serialized):
        record = token_schema.parse_tokens(serialized, grid_shape, tuple(conditions))
        out = {"tokens": record["tokens"], "label": tf.cast(record["label"], tf.int32),
               "clip_id": record["clip_id"]}
        for task in conditions:
            out[token_schema.CONDITION_PREFIX + task] = record[token_schema.CONDITION_PREFIX + task]
        return out
    return parse


def first_record(pattern: str, flag: str = "data") -> tf.train.Example:
    """The first record of the first file matching `pattern` (checked to be a token record)."""
    files = data.list_files(pattern, flag)
    for serialized in tf.data.TFRecordDataset(files[:1]).take(1):
        return token_schema.check_tokens(serialized.numpy())
    raise ValueError(f"--{flag}: {files[0]} holds no record")


def describe(pattern: str, tasks: tuple[str, ...], flag: str = "data") -> dict:
    """What the token records of `pattern` carry: grid shape, codebook size, tokenizer id, and
    which of `tasks` have precomputed condition grids."""
    features = first_record(pattern, flag).features.feature
    return dict(
        grid_shape=tuple(features["grid_shape"].int64_list.value),
        codebook_size=int(features["codebook_size"].int64_list.value[0]),
        tokenizer_id=features["tokenizer_id"].bytes_list.value[0].decode(),
        conditions=tuple(t for t in tasks if token_schema.CONDITION_PREFIX + t in features))


def token_iterator(pattern: str, grid_shape, batch_size: int, *, conditions=(), seed: int = 0,
                   shuffle_buffer: int = 1024, position=None, train: bool = True,
                   flag: str = "data") -> data.ResumableIterator:
    """Numpy batches of token records, resumable from `position` (see magvit.data)."""
    return data.ResumableIterator(pattern, token_parser(grid_shape, conditions), batch_size,
                                  seed=seed, shuffle_buffer=shuffle_buffer, train=train,
                                  position=position, flag=flag)
