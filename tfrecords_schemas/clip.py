"""Raw clip records: T encoded frames of one clip plus where it came from.

Frames are stored as a list of encoded images, PNG by default: lossless, so clips decoded on every
training step never compound JPEG artefacts, at roughly 2-3x the size of JPEG-95 (the option for
very large datasets; `dataset.image_format=jpeg`, `dataset.jpeg_quality`).
"""
import dataclasses

import numpy as np
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from tfrecords_schemas import common

NAME = "magvit.clip"
VERSION = 1
_BYTES, _INT, _FLOAT = schema_pb2.BYTES, schema_pb2.INT, schema_pb2.FLOAT
# feature -> (TFMD type, fixed length or None for variable)
FEATURES = {
    common.SCHEMA_KEY: (_BYTES, 1),
    common.VERSION_KEY: (_INT, 1),
    "frames": (_BYTES, None),         # T encoded images
    "image_format": (_BYTES, 1),      # png | jpeg
    "num_frames": (_INT, 1),
    "height": (_INT, 1),
    "width": (_INT, 1),
    "channels": (_INT, 1),
    "fps": (_FLOAT, 1),               # of the clip as stored (source fps / frame stride)
    "label": (_INT, 1),               # class index, -1 when unlabelled
    "label_name": (_BYTES, 1),
    "video_id": (_BYTES, 1),
    "clip_start": (_INT, 1),          # index of the clip's first frame in the source video
    "dataset": (_BYTES, 1),
}


@dataclasses.dataclass
class Clip:
    frames: np.ndarray        # uint8 [T, H, W, 3]
    fps: float
    label: int
    label_name: str
    video_id: str
    clip_start: int
    dataset: str

    @property
    def clip_id(self) -> str:
        return f"{self.video_id}@{self.clip_start}"


def _encode(frame: np.ndarray, image_format: str, jpeg_quality: int, png_compression: int) -> bytes:
    if image_format == "png":
        return tf.io.encode_png(frame, compression=png_compression).numpy()
    if image_format == "jpeg":
        return tf.io.encode_jpeg(frame, quality=jpeg_quality).numpy()
    raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")


def build_clip(clip: Clip, image_format: str = "png", jpeg_quality: int = 95,
               png_compression: int = 1) -> tf.train.Example:
    """The clip as a record. PNG zlib level 1 encodes ~2.5x faster than the default level 6 for
    ~10-15% more bytes (encoding dominates the data job's cost); decoding speed is the same."""
    frames = np.asarray(clip.frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"clip {clip.clip_id}: frames must be uint8 [T, H, W, 3], "
                         f"got {frames.dtype} {list(frames.shape)}")
    t, h, w, c = frames.shape
    f = common.tag_features(NAME, VERSION)
    f.update(
        frames=common.bytes_feature([_encode(x, image_format, jpeg_quality, png_compression)
                                     for x in frames]),
        image_format=common.bytes_feature(image_format),
        num_frames=common.int_feature(t), height=common.int_feature(h),
        width=common.int_feature(w), channels=common.int_feature(c),
        fps=common.float_feature(clip.fps),
        label=common.int_feature(clip.label), label_name=common.bytes_feature(clip.label_name),
        video_id=common.bytes_feature(clip.video_id), clip_start=common.int_feature(clip.clip_start),
        dataset=common.bytes_feature(clip.dataset),
    )
    return tf.train.Example(features=tf.train.Features(feature=f))


def feature_spec() -> dict:
    return dict(
        frames=tf.io.VarLenFeature(tf.string),
        image_format=tf.io.FixedLenFeature([], tf.string),
        num_frames=tf.io.FixedLenFeature([], tf.int64),
        height=tf.io.FixedLenFeature([], tf.int64),
        width=tf.io.FixedLenFeature([], tf.int64),
        channels=tf.io.FixedLenFeature([], tf.int64),
        fps=tf.io.FixedLenFeature([], tf.float32),
        label=tf.io.FixedLenFeature([], tf.int64),
        label_name=tf.io.FixedLenFeature([], tf.string),
        video_id=tf.io.FixedLenFeature([], tf.string),
        clip_start=tf.io.FixedLenFeature([], tf.int64),
        dataset=tf.io.FixedLenFeature([], tf.string),
    )


def parse_clip(serialized, shape: tuple[int, int, int] | None = None) -> dict:
    """Parses one serialized clip record into tensors; `frames` is uint8 [T, H, W, 3].

    Works eagerly and inside tf.data. `shape=(T, H, W)` fixes the static shape (and checks it at
    run time). A record of another schema or version fails with an InvalidArgumentError saying so;
    use `check_clip` for a Python-side SchemaError.
    """
    with tf.control_dependencies(common.assert_tag(serialized, NAME, VERSION)):
        parsed = tf.io.parse_single_example(serialized, feature_spec())
    encoded = tf.sparse.to_dense(parsed["frames"], default_value=b"")
    frames = tf.map_fn(lambda x: tf.io.decode_image(x, channels=3, expand_animations=False),
                       encoded, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    dims = tf.stack([parsed["num_frames"], parsed["height"], parsed["width"], parsed["channels"]])
    checks = [common.check_in_graph(tf.equal(tf.shape(frames, out_type=tf.int64), dims),
                                    "clip frames do not match the recorded shape")]
    if shape is not None:
        checks.append(common.check_in_graph(
            tf.equal(dims[:3], tf.constant(shape, tf.int64)),
            f"clip shape differs from the expected (T, H, W) = {tuple(shape)}"))
    with tf.control_dependencies(checks):
        frames = tf.identity(frames)
    if shape is not None:
        frames = tf.ensure_shape(frames, [*shape, 3])
    out = {k: v for k, v in parsed.items() if k != "frames"}
    out["frames"] = frames
    return out


def check_clip(serialized: bytes) -> tf.train.Example:
    """Raises SchemaError naming the problem if `serialized` is not a clip record of this version."""
    return common.check_tag(serialized, NAME, VERSION, tuple(FEATURES))


def schema() -> schema_pb2.Schema:
    return common.build_schema(FEATURES)


PBTXT = common.pbtxt_path(__file__, "clip")
