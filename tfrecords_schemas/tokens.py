"""Token records: one clip's token grid from a given 3D-VQ tokenizer.

Token ids are an int64_list: TFRecord stores it as packed varints, so ids below 16384 take two
bytes each (a 4x16x16 grid of 1024-code ids is ~2 KiB). `tokenizer_id` (a hash of the tokenizer's
parameters) travels with every record so token datasets of different tokenizers never mix.
Optional condition grids (`condition/<task>`) hold the tokens of a task's condition video, for
tasks whose condition is a deterministic function of the clip.
"""
import dataclasses

import numpy as np
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from tfrecords_schemas import common

NAME = "magvit.tokens"
VERSION = 1
CONDITION_PREFIX = "condition/"
_BYTES, _INT = schema_pb2.BYTES, schema_pb2.INT
FEATURES = {
    common.SCHEMA_KEY: (_BYTES, 1),
    common.VERSION_KEY: (_INT, 1),
    "tokens": (_INT, None),           # row-major [t, h, w]
    "grid_shape": (_INT, 3),          # (t, h, w)
    "codebook_size": (_INT, 1),
    "tokenizer_id": (_BYTES, 1),
    "label": (_INT, 1),
    "label_name": (_BYTES, 1),
    "clip_id": (_BYTES, 1),
    "dataset": (_BYTES, 1),
}


@dataclasses.dataclass
class TokenGrid:
    tokens: np.ndarray               # int [t, h, w]
    codebook_size: int
    tokenizer_id: str
    label: int
    label_name: str
    clip_id: str
    dataset: str
    conditions: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # task -> [t,h,w]


def build_tokens(grid: TokenGrid) -> tf.train.Example:
    tokens = np.asarray(grid.tokens)
    if tokens.ndim != 3 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"clip {grid.clip_id}: tokens must be an integer [t, h, w] grid, "
                         f"got {tokens.dtype} {list(tokens.shape)}")
    for name, ids in [("tokens", tokens), *grid.conditions.items()]:
        ids = np.asarray(ids)
        if ids.shape != tokens.shape:
            raise ValueError(f"clip {grid.clip_id}: {name} has shape {list(ids.shape)}, "
                             f"expected {list(tokens.shape)}")
        if ids.size and (ids.min() < 0 or ids.max() >= grid.codebook_size):
            raise ValueError(f"clip {grid.clip_id}: {name} ids outside [0, {grid.codebook_size})")
    values = dict(tokens=tokens, grid_shape=tokens.shape, codebook_size=grid.codebook_size,
                  tokenizer_id=grid.tokenizer_id, label=grid.label, label_name=grid.label_name,
                  clip_id=grid.clip_id, dataset=grid.dataset)
    values.update({CONDITION_PREFIX + task: np.asarray(ids) for task, ids in grid.conditions.items()})
    kinds = {**FEATURES, **{CONDITION_PREFIX + task: (_INT, None) for task in grid.conditions}}
    return common.build_example(NAME, VERSION, kinds, values)


def feature_spec(grid_shape: tuple[int, int, int], conditions: tuple[str, ...] = ()) -> dict:
    size = int(np.prod(grid_shape))
    spec = dict(
        tokens=tf.io.FixedLenFeature([size], tf.int64),
        grid_shape=tf.io.FixedLenFeature([3], tf.int64),
        codebook_size=tf.io.FixedLenFeature([], tf.int64),
        tokenizer_id=tf.io.FixedLenFeature([], tf.string),
        label=tf.io.FixedLenFeature([], tf.int64),
        label_name=tf.io.FixedLenFeature([], tf.string),
        clip_id=tf.io.FixedLenFeature([], tf.string),
        dataset=tf.io.FixedLenFeature([], tf.string),
    )
    for task in conditions:
        spec[CONDITION_PREFIX + task] = tf.io.FixedLenFeature([size], tf.int64)
    return spec


def parse_tokens(serialized, grid_shape: tuple[int, int, int], conditions: tuple[str, ...] = (),
                 tokenizer_id: str | None = None) -> dict:
    """Parses one token record; `tokens` (and each `condition/<task>`) as int32 [t, h, w].

    Works eagerly and inside tf.data. A record of another schema, version, grid shape or (when
    `tokenizer_id` is given) another tokenizer fails with an InvalidArgumentError saying so.
    """
    with tf.control_dependencies(common.assert_tag(serialized, NAME, VERSION)):
        shape = tf.io.parse_single_example(serialized, {"grid_shape": feature_spec(grid_shape)["grid_shape"]})
    with tf.control_dependencies([common.check_in_graph(
            tf.equal(shape["grid_shape"], tf.constant(grid_shape, tf.int64)),
            f"token grid shape differs from the expected {tuple(grid_shape)}")]):
        parsed = tf.io.parse_single_example(serialized, feature_spec(grid_shape, conditions))
    checks = []
    if tokenizer_id is not None:
        checks.append(common.check_in_graph(tf.equal(parsed["tokenizer_id"], tokenizer_id),
                                            f"tokens come from another tokenizer than {tokenizer_id}"))
    out = {}
    with tf.control_dependencies(checks):
        for key in ["tokens"] + [CONDITION_PREFIX + t for t in conditions]:
            out[key] = tf.reshape(tf.cast(parsed[key], tf.int32), grid_shape)
    for key in ("codebook_size", "tokenizer_id", "label", "label_name", "clip_id", "dataset"):
        out[key] = parsed[key]
    return out


def check_tokens(serialized: bytes) -> tf.train.Example:
    """Raises SchemaError naming the problem if `serialized` is not a token record of this version."""
    return common.check_tag(serialized, NAME, VERSION, tuple(FEATURES))


def schema() -> schema_pb2.Schema:
    return common.build_schema(FEATURES)


PBTXT = common.pbtxt_path(__file__, "tokens")
