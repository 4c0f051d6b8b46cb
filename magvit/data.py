"""tf.data input from TFRecords with an exactly resumable position.

Generic over the record format: give a parser (e.g. `clip_parser(clip_shape)` for raw clips, or
any function of one serialized record returning a dict of tensors, such as a wrapper around
`tfrecords_schemas.tokens.parse_tokens`).

Order. Epoch `e` lists the files matching the pattern, shuffles them with seed `seed + e`, reads
them interleaved (deterministically) and shuffles the records with a buffer seeded by `seed + e`.
Epochs follow one another without end (training) or there is exactly one, unshuffled (eval).

Position. A `Position(epoch, offset)` says how many records of which epoch were consumed. Every
record carries its epoch number through the pipeline, so `ResumableIterator` knows the position
after each batch; restarting from that position skips the consumed serialized records before they
are parsed (no decoding), which makes a resumed run see exactly the batches an uninterrupted run
would have seen. Store `iterator.position.to_dict()` in the checkpoint metadata.

With several JAX processes, each reads its own shard of the files and yields `batch_size /
process_count` examples per batch (the global batch is `batch_size`).

`records=False` makes each file one element (its path goes to the parser): the image folders of
`magvit.image_data`, shuffled, resumed and sharded exactly as the records are.
"""
import dataclasses
from typing import Callable, Iterator

import jax
import numpy as np
import tensorflow as tf

from tfrecords_schemas.clip import parse_clip

_EPOCH_KEY = "_epoch"


@dataclasses.dataclass(frozen=True)
class Position:
    """Where an input stream stands: `offset` records of epoch `epoch` already consumed."""
    epoch: int = 0
    offset: int = 0

    def to_dict(self) -> dict:
        return {"epoch": int(self.epoch), "offset": int(self.offset)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Position":
        return cls(**d) if d else cls()


def list_files(pattern: str, flag: str = "data") -> list[str]:
    """Sorted files matching a glob (comma-separated globs allowed); a clear error when none do."""
    files = sorted({f for p in pattern.split(",") if p for f in tf.io.gfile.glob(p.strip())})
    if not files:
        raise FileNotFoundError(f"--{flag}={pattern!r} matches no file")
    return files


def check_has_records(files: list[str], pattern: str, flag: str = "data") -> None:
    """Raises ValueError when none of `files` (this process's share) holds a record: an endless
    training stream over empty epochs would otherwise wait forever. Reads one record at most per
    file, stopping at the first file that has one."""
    if jax.process_count() > 1:
        files = files[jax.process_index()::jax.process_count()]
    for path in files:
        for _ in tf.data.TFRecordDataset(path).take(1):
            return
    raise ValueError(f"--{flag}={pattern!r}: the {len(files)} file(s) it matches hold no record "
                     f"({', '.join(files[:3])}{', ...' if len(files) > 3 else ''}); nothing to "
                     "train on (did the data stage write 0 clips? see its stats.json and "
                     "failures file)")


def clip_parser(clip_shape: tuple[int, int, int]) -> Callable[[tf.Tensor], dict]:
    """Parser of raw clip records: `frames` uint8 [T, H, W, 3] and `label` int32."""
    shape = tuple(int(s) for s in clip_shape)

    def parse(serialized):
        clip = parse_clip(serialized, shape=shape)
        return {"frames": clip["frames"], "label": tf.cast(clip["label"], tf.int32)}
    return parse


def _epoch_records(files: list[str], epoch, seed: int, shuffle_buffer: int, shuffle: bool,
                   records: bool = True):
    names = tf.data.Dataset.from_tensor_slices(files)
    if jax.process_count() > 1:
        names = names.shard(jax.process_count(), jax.process_index())
    epoch_seed = tf.cast(epoch, tf.int64) + seed
    if shuffle:
        names = names.shuffle(len(files), seed=epoch_seed)
    if not records:   # one element per file: the file names, shuffled above
        return names.map(lambda r: (tf.cast(epoch, tf.int64), r))
    records = names.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                               block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                               deterministic=True)
    if shuffle and shuffle_buffer > 1:
        records = records.shuffle(shuffle_buffer, seed=epoch_seed)
    return records.map(lambda r: (tf.cast(epoch, tf.int64), r))


def make_dataset(pattern: str, parse_fn: Callable, batch_size: int, *, seed: int = 0,
                 shuffle_buffer: int = 1024, train: bool = True,
                 position: Position = Position(), flag: str = "data",
                 files: list[str] | None = None, records: bool = True) -> tf.data.Dataset:
    """Batches of parsed records (plus `_epoch` per example) from `position` on.

    train=True: shuffled, endless, full batches only. train=False: one pass in file order, the last
    batch may be smaller. `files` (already listed) replaces the glob `pattern`, which then only
    names them in errors; `records=False`: each file is one element (see the module doc).
    """
    files = list(files) if files is not None else list_files(pattern, flag)
    if not files:
        raise FileNotFoundError(f"--{flag}={pattern!r}: no file to read")
    per_process = batch_size // jax.process_count()
    if per_process * jax.process_count() != batch_size or per_process == 0:
        raise ValueError(f"batch size {batch_size} is not divisible by the {jax.process_count()} "
                         "JAX processes")
    if train and records:
        check_has_records(files, pattern, flag)
    last_epoch = np.iinfo(np.int64).max if train else 1
    epochs = tf.data.Dataset.range(position.epoch, last_epoch)
    ds = epochs.flat_map(lambda e: _epoch_records(files, e, seed, shuffle_buffer, train, records))
    ds = ds.skip(position.offset)

    def parse(epoch, serialized):
        out = dict(parse_fn(serialized))
        out[_EPOCH_KEY] = epoch
        return out
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(per_process, drop_remainder=train)
    # No autotuning thread: destroying an iterator whose autotuner had been running for minutes
    # blocked for up to a minute inside the pipeline process (tf.data waits for that thread's
    # current sleep, which grows to 60 s). AUTOTUNE above then means one call per CPU core.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(2).with_options(options)


class ResumableIterator:
    """Iterates numpy batches (dicts) and tracks the `Position` after the last batch returned."""

    def __init__(self, pattern: str, parse_fn: Callable, batch_size: int, *, seed: int = 0,
                 shuffle_buffer: int = 1024, train: bool = True,
                 position: Position | dict | None = None, flag: str = "data",
                 files: list[str] | None = None, records: bool = True):
        self.position = position if isinstance(position, Position) else Position.from_dict(position)
        self._dataset = make_dataset(pattern, parse_fn, batch_size, seed=seed,
                                     shuffle_buffer=shuffle_buffer, train=train,
                                     position=self.position, flag=flag, files=files,
                                     records=records)
        self._iterator: Iterator = iter(self._dataset.as_numpy_iterator())

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        batch = next(self._iterator)
        epochs = batch.pop(_EPOCH_KEY)
        last = int(epochs[-1])
        consumed = int(np.sum(epochs == last))
        if last == self.position.epoch:
            self.position = Position(last, self.position.offset + consumed)
        else:
            self.position = Position(last, consumed)
        return batch
