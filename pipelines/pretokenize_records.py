"""Pre-tokenization's per-record and per-batch work, plain functions tested without Beam: parse
and check clip records (`decode_clip`, `batch_decoder`; `BadRecord` names what is wrong), encode
batches with a tokenizer (`start_encoding` / `finish_encoding`), codebook statistics
(`token_stats`), and the up-front check that a tokenizer fits the clips (`check_tokenizer_matches`).
The Beam job is `pipelines.pretokenize`.
"""
import dataclasses

import numpy as np
import tensorflow as tf

from magvit.transformer.tasks import get_task
from tfrecords_schemas import clip as clip_schema
from tfrecords_schemas import common
from tfrecords_schemas import tokens as tokens_schema

PEEK_RECORDS = 8


# ---------------------------------------------------------------------------------------------
# Per-record and per-batch work (plain functions, tested without Beam).

class BadRecord(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def record_shape(example: tf.train.Example) -> tuple[int, int, int]:
    f = example.features.feature
    return tuple(int(f[k].int64_list.value[0]) for k in ("num_frames", "height", "width"))


def clip_decoder(clip_shape: tuple[int, int, int]):
    """A function: serialized clip record -> decoded clip dict (see `decode_clip`).

    The TF parsing runs as one compiled tf.function per record, not op by op.
    """
    clip_shape = tuple(int(s) for s in clip_shape)
    parse = tf.function(lambda serialized: clip_schema.parse_clip(serialized, shape=clip_shape))
    return lambda serialized: decode_clip(serialized, clip_shape, parse)


_CLIP_FIELDS = ("label", "label_name", "video_id", "clip_start", "dataset")


def batch_decoder(clip_shape: tuple[int, int, int]):
    """A function: list of serialized clip records -> list of decoded clips (see `decode_clip`).

    One compiled call (`clip_schema.parse_clips`) parses the whole batch. Any bad record makes the
    call fail; `EncodeRecords.process` then decodes record by record to find it.
    """
    clip_shape = tuple(int(s) for s in clip_shape)
    parse = tf.function(lambda batch: clip_schema.parse_clips(batch, clip_shape),
                        input_signature=[tf.TensorSpec([None], tf.string)])

    def decode(records: list[bytes]) -> list[dict]:
        parsed = {k: v.numpy() for k, v in parse(tf.constant(records)).items()
                  if k in ("frames",) + _CLIP_FIELDS}
        return [_clip_dict({k: v[i] for k, v in parsed.items()}) for i in range(len(records))]
    return decode


def _clip_dict(parsed: dict) -> dict:
    video_id = parsed["video_id"].decode()
    return {"frames": parsed["frames"], "label": int(parsed["label"]),
            "label_name": parsed["label_name"].decode(),
            "clip_id": f"{video_id}@{int(parsed['clip_start'])}",
            "dataset": parsed["dataset"].decode()}


def decode_clip(serialized: bytes, clip_shape: tuple[int, int, int], parse=None) -> dict:
    """A clip record -> {frames uint8 [T,H,W,3], label, label_name, clip_id, dataset}.

    Raises BadRecord(reason, detail) for a record of another schema ("schema"), another clip shape
    ("shape") or undecodable frames ("decode"). `parse`: parse_clip at `clip_shape`, compiled.
    """
    try:
        example = clip_schema.check_clip(serialized)
    except common.SchemaError as e:
        raise BadRecord("schema", str(e)) from e
    shape = record_shape(example)
    if shape != tuple(clip_shape):
        raise BadRecord("shape", f"clip is {_dims(shape)} (T x H x W), the tokenizer encodes "
                        f"{_dims(clip_shape)}")
    try:
        parsed = (parse or (lambda s: clip_schema.parse_clip(s, shape=tuple(clip_shape))))(
            tf.constant(serialized))
    except (tf.errors.InvalidArgumentError, ValueError) as e:
        raise BadRecord("decode", str(e).splitlines()[0]) from e
    return _clip_dict({k: parsed[k].numpy() for k in ("frames",) + _CLIP_FIELDS})


@dataclasses.dataclass
class PendingBatch:
    """A batch whose encoding was started (`start_encoding`) and may still be running."""
    clips: list[dict]
    ids: object                       # [batch_size, t, h, w] jax.Array, padded
    condition_ids: dict               # task -> the same, for the task's condition video


def start_encoding(tokenizer, clips: list[dict], batch_size: int, conditions=(),
                   condition_frames: int = 1) -> PendingBatch:
    """Starts encoding up to `batch_size` decoded clips (padded to exactly `batch_size`, so the
    encoder compiles once) and returns without waiting for the result."""
    if not 0 < len(clips) <= batch_size:
        raise ValueError(f"encoding takes 1 to {batch_size} clips at a time, got {len(clips)}")
    frames = np.stack([c["frames"] for c in clips])
    padded = np.concatenate([frames, np.repeat(frames[-1:], batch_size - len(clips), axis=0)])
    return PendingBatch(clips, tokenizer.encode_async(padded), {
        task: tokenizer.encode_async(get_task(task, condition_frames).condition_video(padded))
        for task in conditions})


def finish_encoding(tokenizer, pending: PendingBatch) -> list[tokens_schema.TokenGrid]:
    """Waits for a started batch; one token grid per clip."""
    n = len(pending.clips)
    ids = np.asarray(pending.ids, np.int32)[:n]
    condition_ids = {task: np.asarray(v, np.int32)[:n] for task, v in pending.condition_ids.items()}
    return [tokens_schema.TokenGrid(
        tokens=ids[i], codebook_size=tokenizer.codebook_size, tokenizer_id=tokenizer.checkpoint_id,
        label=c["label"], label_name=c["label_name"], clip_id=c["clip_id"], dataset=c["dataset"],
        conditions={task: v[i] for task, v in condition_ids.items()})
        for i, c in enumerate(pending.clips)]


def encode_batch(tokenizer, clips: list[dict], batch_size: int, conditions=(),
                 condition_frames: int = 1) -> list[tokens_schema.TokenGrid]:
    """Encodes up to `batch_size` decoded clips and waits for the result."""
    return finish_encoding(tokenizer, start_encoding(tokenizer, clips, batch_size, conditions,
                                                     condition_frames))


def token_stats(counts: np.ndarray, num_clips: int) -> dict:
    """Codebook usage (fraction of codes used) and perplexity of a token-id histogram."""
    total = counts.sum()
    probs = counts / max(total, 1)
    nonzero = probs[probs > 0]
    return {"clips": int(num_clips), "tokens": int(total),
            "codebook_usage": float(np.mean(counts > 0)),
            "perplexity": float(np.exp(-np.sum(nonzero * np.log(nonzero))))}


def check_tokenizer_matches(tokenizer, files: list[str]) -> None:
    """Refuses a tokenizer whose clip shape is not that of most of the first clip records."""
    shapes = []
    for serialized in tf.data.TFRecordDataset(files[:4]).take(PEEK_RECORDS):
        try:
            shapes.append(record_shape(clip_schema.check_clip(serialized.numpy())))
        except common.SchemaError:
            continue
    expected = tuple(tokenizer.clip_shape)
    matching = sum(shape == expected for shape in shapes)
    if shapes and 2 * matching <= len(shapes):
        other = max(set(shapes), key=shapes.count)
        raise ValueError(
            f"tokenizer {tokenizer.checkpoint_id} encodes clips of {_dims(expected)} (T x H x W) "
            f"but {shapes.count(other)} of the first {len(shapes)} clips in {files[0]} are "
            f"{_dims(other)}: use a tokenizer trained at the clips' resolution")


def _dims(shape) -> str:
    return "x".join(str(int(s)) for s in shape)
