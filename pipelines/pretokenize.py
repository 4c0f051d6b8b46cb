"""Pre-tokenization: a Beam job that encodes clip records into token records with a trained 3D-VQ.

    python -m pipelines.pretokenize --clips='out/demo/train/clips-*' --tokenizer=runs/tok \
        --out=out/tokens --split=train

Per split, reads `clips` (tfrecords_schemas.clip), encodes each clip with the tokenizer (loaded
once per worker in `DoFn.setup` and shared across its threads; clips batched by `BatchElements`
up to `batch_size`, padded to exactly `batch_size` so the jit-compiled encoder compiles once) and
writes `<out>/<split>/tokens-*.tfrecord` (tfrecords_schemas.tokens: ids, grid shape, codebook size,
label, source clip id, the tokenizer's checkpoint id) plus, for each task in `conditions`, the
tokens of that task's condition video (e.g. frame prediction's padded first frame), so transformer
training needs no tokenizer. Beside them: `stats.json` (clips encoded, failures, codebook usage,
perplexity), `schema.pbtxt`, and the dead-letter `failures-*.jsonl` ({"path", "stage", "reason",
"detail"}) holding the records of another schema or clip shape.

A tokenizer whose clip shape is not that of most of the first clip records is refused up front.
"""
import json
import os
import sys
import uuid

from absl import flags
import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils import shared
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue
import numpy as np
import tensorflow as tf

from magvit import cli
from magvit.data import list_files
from magvit.tokenizer.api import Tokenizer
from magvit.transformer.tasks import get_task
from pipelines import beam_options, dead_letters
from pipelines import gfile_filesystem  # noqa: F401  (Beam I/O on ram://)
from pipelines.datasets.common import Failure
from pipelines.pretokenize_records import (  # noqa: F401  (the job's public names, importable here)
    PEEK_RECORDS, BadRecord, PendingBatch, batch_decoder, check_tokenizer_matches, clip_decoder,
    decode_clip, encode_batch, finish_encoding, record_shape, start_encoding, token_stats)
from tfrecords_schemas import common
from tfrecords_schemas import tokens as tokens_schema

STAGE = "pretokenize"
TOKENS_PREFIX = "tokens"
FAILURES_PREFIX = dead_letters.PREFIX
STATS_FILE = "stats.json"


# ---------------------------------------------------------------------------------------------
# Beam

class EncodeRecords(beam.DoFn):
    """Batches of (path, serialized clip) -> a serialized token record per clip; bad records to
    the `failures` output, (clips, token-id counts) per batch to the `histogram` output.

    Pipelined: a batch's encoding is started, and its records are written only after the next
    batch is parsed, so parsing (TF, on this thread) overlaps encoding (XLA, on its threads) as in
    a tf.data input pipeline; the last batch of a bundle is finished in `finish_bundle`."""

    def __init__(self, tokenizer_dir: str, clip_shape, batch_size: int, conditions,
                 condition_frames: int, shared_handle: shared.Shared):
        self._tokenizer_dir = tokenizer_dir
        self._clip_shape = tuple(clip_shape)
        self._batch_size = batch_size
        self._conditions = tuple(conditions)
        self._condition_frames = condition_frames
        self._shared = shared_handle

    def setup(self):
        self._tokenizer = self._shared.acquire(lambda: _SharedTokenizer(
            Tokenizer.load(self._tokenizer_dir))).tokenizer
        self._decode_batch = batch_decoder(self._clip_shape)
        self._decode_one = clip_decoder(self._clip_shape)

    def start_bundle(self):
        self._pending = None

    def process(self, batch):
        try:
            clips = self._decode_batch([serialized for _, serialized in batch])
        except tf.errors.InvalidArgumentError:  # a bad record: find it, keep the others
            clips = []
            for path, serialized in batch:
                try:
                    clips.append(self._decode_one(serialized))
                except BadRecord as e:
                    beam.metrics.Metrics.counter(STAGE, f"failures_{e.reason}").inc()
                    yield beam.pvalue.TaggedOutput("failures", Failure(
                        path=path, split="", stage=STAGE, reason=e.reason,
                        detail=e.detail).to_json())
        started = clips and start_encoding(self._tokenizer, clips, self._batch_size,
                                           self._conditions, self._condition_frames)
        yield from self._finish()
        self._pending = started

    def finish_bundle(self):
        for output in self._finish():
            tag, value = ((output.tag, output.value) if isinstance(output, beam.pvalue.TaggedOutput)
                          else (None, output))
            windowed = WindowedValue(value, MIN_TIMESTAMP, [GlobalWindow()])
            yield windowed if tag is None else beam.pvalue.TaggedOutput(tag, windowed)

    def _finish(self):
        """The outputs of the pending batch, if any."""
        if not self._pending:
            return
        grids, self._pending = finish_encoding(self._tokenizer, self._pending), None
        beam.metrics.Metrics.counter(STAGE, "clips_encoded").inc(len(grids))
        for grid in grids:
            # deterministic: map fields (the features) in key order, the same bytes every run
            yield tokens_schema.build_tokens(grid).SerializeToString(deterministic=True)
        ids = np.stack([grid.tokens for grid in grids])
        yield beam.pvalue.TaggedOutput("histogram", (len(grids), np.bincount(
            ids.reshape(-1), minlength=self._tokenizer.codebook_size)))


class _SharedTokenizer:
    """Shared.acquire needs a weak-referenceable object."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer


class HistogramFn(beam.CombineFn):
    """(count of clips, histogram of token ids) over all clips, from per-batch (clips, counts)."""

    def __init__(self, codebook_size: int):
        self._size = codebook_size

    def create_accumulator(self):
        return 0, np.zeros(self._size, np.int64)

    def add_input(self, acc, batch):
        clips, counts = batch
        return acc[0] + clips, acc[1] + counts

    def merge_accumulators(self, accs):
        accs = list(accs)
        return sum(a[0] for a in accs), sum(a[1] for a in accs)

    def extract_output(self, acc):
        return token_stats(acc[1], acc[0])


def write_split_summary(stats: dict, num_failures: dict, split: str, split_dir: str,
                        info: dict) -> None:
    """Writes a split's stats.json; `num_failures`: {split: dead letters} (none: absent)."""
    tf.io.gfile.makedirs(split_dir)
    with tf.io.gfile.GFile(os.path.join(split_dir, STATS_FILE), "w") as f:
        json.dump({**stats, "failures": int(num_failures.get(split, 0)), **info}, f,
                  sort_keys=True)


def build_split(p, split: str, files: list[str], tokenizer, tokenizer_dir: str, out_dir: str,
                batch_size: int, conditions, condition_frames: int, num_shards: int,
                shared_handle: shared.Shared) -> None:
    split_dir = os.path.join(out_dir, split)
    decoded = (p
               | f"Files[{split}]" >> beam.Create(files)
               | f"Read[{split}]" >> beam.io.ReadAllFromTFRecord(with_filename=True)
               | f"Batch[{split}]" >> beam.BatchElements(min_batch_size=batch_size,
                                                         max_batch_size=batch_size)
               | f"Encode[{split}]" >> beam.ParDo(EncodeRecords(
                   tokenizer_dir, tokenizer.clip_shape, batch_size, conditions, condition_frames,
                   shared_handle)).with_outputs("failures", "histogram", main="tokens"))
    _ = (decoded.tokens
         | f"Write[{split}]" >> beam.io.WriteToTFRecord(
             os.path.join(split_dir, TOKENS_PREFIX), file_name_suffix=".tfrecord",
             num_shards=num_shards))
    # Dead letters in bounded memory: sorted files written by the workers (pipelines/dead_letters).
    write_failures = dead_letters.WriteDeadLetters({split: split_dir})
    _ = (decoded.failures
         | f"FailureLines[{split}]" >> beam.Map(lambda line, name: (name, line), split)
         | f"Failures[{split}]" >> write_failures)
    _ = (decoded.histogram
         | f"Histogram[{split}]" >> beam.CombineGlobally(HistogramFn(tokenizer.codebook_size))
         | f"WriteSummary[{split}]" >> beam.Map(
             write_split_summary, num_failures=beam.pvalue.AsDict(write_failures.line_counts),
             split=split, split_dir=split_dir,
             info={"split": split, "tokenizer_id": tokenizer.checkpoint_id,
                   "grid_shape": list(tokenizer.grid_shape),
                   "codebook_size": int(tokenizer.codebook_size),
                   "conditions": list(conditions)}))


def replace_split_dir(staged: str, split_dir: str) -> None:
    """Makes `split_dir` hold exactly the files of `staged` (a finished run's output): the files
    an earlier run left there (e.g. shards of another shard count) are removed first."""
    tf.io.gfile.makedirs(split_dir)
    for name in tf.io.gfile.listdir(split_dir):
        path = os.path.join(split_dir, name)
        if not tf.io.gfile.isdir(path):
            tf.io.gfile.remove(path)
    for name in tf.io.gfile.listdir(staged):
        tf.io.gfile.rename(os.path.join(staged, name), os.path.join(split_dir, name.rstrip("/")))


def run_pretokenize(splits: dict[str, str], tokenizer_dir: str, out_dir: str, *,
                    batch_size: int = 8, conditions=(), condition_frames: int = 1,
                    num_shards: int = 0, beam_args=None) -> dict:
    """Encodes each split's clip records ({split: file pattern}) into `<out_dir>/<split>/`.

    Returns {split: stats} (also written as `<out_dir>/<split>/stats.json`). The job writes into
    a staging folder under `out_dir`; only when it succeeds does each `<out_dir>/<split>/` get
    its files replaced by the new ones, so the folder holds exactly one run's output.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for task in conditions:
        if not get_task(task, condition_frames).has_condition:
            raise ValueError(f"task {task!r} has no condition video to tokenize")
    # Loaded once here, through the handle the workers use: workers in this process (DirectRunner's
    # default) share this instance and its compiled encoder; others load their own in setup().
    shared_handle = shared.Shared()
    holder = shared_handle.acquire(lambda: _SharedTokenizer(Tokenizer.load(tokenizer_dir)))
    tokenizer = holder.tokenizer
    files = {split: list_files(pattern, flag="clips") for split, pattern in splits.items()}
    for split_files in files.values():
        check_tokenizer_matches(tokenizer, split_files)
    options = beam_options.pipeline_options(beam_args)
    staging = os.path.join(out_dir, f"_staging-{uuid.uuid4().hex[:12]}")
    try:
        with beam.Pipeline(options=options) as p:
            for split, split_files in files.items():
                build_split(p, split, split_files, tokenizer, tokenizer_dir, staging, batch_size,
                            conditions, condition_frames, num_shards, shared_handle)
        for split in files:
            common.write_schema(tokens_schema.schema(), os.path.join(staging, split))
            replace_split_dir(os.path.join(staging, split), os.path.join(out_dir, split))
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
    stats = {}
    for split in files:
        with tf.io.gfile.GFile(os.path.join(out_dir, split, STATS_FILE)) as f:
            stats[split] = json.load(f)
    return stats


def _define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("clips", None, "Clip TFRecords to encode (glob, comma-separated).",
                        flag_values=fv)
    flags.DEFINE_string("tokenizer", None, "Trained tokenizer directory (magvit.train_tokenizer).",
                        flag_values=fv)
    flags.DEFINE_string("out", None, "Output folder (or gs:// path).", flag_values=fv)
    flags.DEFINE_string("split", "train", "Split name (the output subfolder).", flag_values=fv)
    flags.DEFINE_integer("batch_size", 8, "Clips per encoder call.", lower_bound=1, flag_values=fv)
    flags.DEFINE_list("conditions", [], "Tasks whose condition videos to tokenize too "
                      "(comma-separated).", flag_values=fv)
    flags.DEFINE_integer("condition_frames", 1, "Condition frames of frame prediction.",
                         flag_values=fv)
    flags.DEFINE_integer("num_shards", 0, "Output shards per split; 0: Beam decides.",
                         lower_bound=0, flag_values=fv)


PROGRAM = cli.Program("pipelines.pretokenize", __doc__, _define_flags,
                      required=("clips", "tokenizer", "out"), config_default=None,
                      passthrough=beam_options.split_beam_args,
                      passthrough_help=beam_options.BEAM_HELP)


def _main(fv: flags.FlagValues, beam_args: list[str]) -> None:
    try:
        stats = run_pretokenize(
            {fv.split: fv.clips}, fv.tokenizer, fv.out, batch_size=fv.batch_size,
            conditions=tuple(fv.conditions), condition_frames=fv.condition_frames,
            num_shards=fv.num_shards, beam_args=beam_args)
    except (ValueError, FileNotFoundError) as e:
        raise cli.UsageError(str(e)) from e
    print(json.dumps(stats, indent=2, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    return PROGRAM.run(_main, argv)


if __name__ == "__main__":
    # Run the imported module, not this `__main__` copy: what Beam workers unpickle must name
    # `pipelines.pretokenize`, which every worker process can import.
    from pipelines import pretokenize as _importable
    sys.exit(_importable.main())
