"""What both record formats share: the schema tag, version checks and TFMD schema building."""
import os

import numpy as np
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from google.protobuf import text_format

SCHEMA_KEY = "schema"
VERSION_KEY = "schema_version"


class SchemaError(ValueError):
    """A record that does not follow the expected schema (or version)."""


def build_example(name: str, version: int, features: dict, values: dict) -> tf.train.Example:
    """A record of schema `name` (tagged with it and `version`) holding `values` ({feature: a value
    or a sequence}); each feature gets the list type its `features` entry (TFMD type, length) names.
    Values go straight into the record, so large byte strings (encoded frames) are copied once."""
    example = tf.train.Example()
    fields = example.features.feature
    for key, value in {SCHEMA_KEY: name, VERSION_KEY: version, **values}.items():
        if isinstance(value, np.ndarray):
            value = value.reshape(-1).tolist()
        elif isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            value = [value]
        kind = features[key][0]
        if kind == schema_pb2.BYTES:
            fields[key].bytes_list.value.extend(v.encode() if isinstance(v, str) else v for v in value)
        elif kind == schema_pb2.INT:
            fields[key].int64_list.value.extend(int(v) for v in value)
        else:
            fields[key].float_list.value.extend(float(v) for v in value)
    return example


def check_tag(serialized: bytes, name: str, version: int, required: tuple[str, ...]) -> tf.train.Example:
    """Parses `serialized` as a tf.train.Example and checks its schema tag and required features.

    Raises SchemaError saying what the record is and what was expected.
    """
    try:
        example = tf.train.Example.FromString(serialized)
    except Exception as e:  # protobuf raises DecodeError, a bare Exception subclass
        raise SchemaError(f"not a tf.train.Example ({type(e).__name__}: {e}); expected a "
                          f"{name} v{version} record") from e
    features = example.features.feature
    got_name = (features[SCHEMA_KEY].bytes_list.value[0].decode()
                if SCHEMA_KEY in features and features[SCHEMA_KEY].bytes_list.value else None)
    got_version = (features[VERSION_KEY].int64_list.value[0]
                   if VERSION_KEY in features and features[VERSION_KEY].int64_list.value else None)
    if got_name != name:
        raise SchemaError(f"record has schema {got_name!r}, expected {name!r}")
    if got_version != version:
        raise SchemaError(f"{name} record has version {got_version}, this code reads version {version}")
    missing = [k for k in required if k not in features]
    if missing:
        raise SchemaError(f"{name} v{version} record lacks required feature(s): {', '.join(missing)}")
    return example


def check_in_graph(condition, message: str):
    """An assertion that works eagerly and inside tf.data; fails with `message` in the error."""
    return tf.debugging.Assert(tf.reduce_all(condition), [tf.constant(message)])


def parse_tag(serialized) -> dict:
    """Parses just the schema tag (missing -> empty name, version -1) of one record or a batch."""
    return tf.io.parse_example(serialized, {
        SCHEMA_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
        VERSION_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=-1)})


def assert_tag(serialized, name: str, version: int) -> list:
    """In-graph check of the schema tag of a record (or of every record of a batch), before their
    other features are parsed."""
    tag = parse_tag(serialized)
    return [check_in_graph(tf.equal(tag[SCHEMA_KEY], name), f"record is not a {name} record"),
            check_in_graph(tf.equal(tag[VERSION_KEY], version),
                           f"{name} record has another version than {version}")]


def build_schema(features: dict[str, tuple[int, int | None]]) -> schema_pb2.Schema:
    """TFMD schema from {name: (schema_pb2.FeatureType, fixed length or None)}."""
    schema = schema_pb2.Schema()
    for name, (kind, length) in features.items():
        feature = schema.feature.add(name=name, type=kind)
        if length is None:
            feature.value_count.min = 1
        else:
            feature.shape.dim.add(size=length)
        feature.presence.min_fraction = 1.0
    return schema


def schema_text(schema: schema_pb2.Schema) -> str:
    return text_format.MessageToString(schema)


def pbtxt_path(module_file: str, name: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(module_file)), f"{name}.schema.pbtxt")


def write_schema(schema: schema_pb2.Schema, directory: str, filename: str = "schema.pbtxt") -> str:
    """Writes the TFMD schema beside a dataset (any filesystem tf.io.gfile knows)."""
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, filename)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(schema_text(schema))
    return path
