"""Pretokenizer: the pre-tokenization Beam job (`pipelines.pretokenize`) over every clip split.

Reads the clip Examples with the trained tokenizer Model and writes a token Examples artifact,
`<uri>/<split>/tokens-*.tfrecord` with `stats.json`, `schema.pbtxt` and the dead-letter
`failures-*.jsonl` beside each split. Its parameters (`parameters(config)`) are the batch size and
the condition tasks of config.transformer, so other transformer settings leave it cached.
"""
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components import artifacts, config_param, progress
from pipelines.pretokenize import TOKENS_PREFIX, run_pretokenize


def parameters(config) -> dict:
    """The execution parameters of this stage from a full config."""
    from magvit.transformer.tasks import get_tasks
    conditions = [t.name for t in get_tasks(config.transformer) if t.has_condition]
    # The tokenizer's training batch fits in memory with gradients, so it fits for encoding.
    return dict(batch_size=int(config.tokenizer.training.batch_size),
                conditions=config_param.dumps_list(conditions),
                condition_frames=int(config.transformer.condition_frames))


@component
def Pretokenizer(clips: InputArtifact[standard_artifacts.Examples],
                 tokenizer: InputArtifact[standard_artifacts.Model],
                 tokens: OutputArtifact[standard_artifacts.Examples],
                 batch_size: Parameter[int], conditions: Parameter[str],
                 condition_frames: Parameter[int], beam_args: Parameter[str]):
    """Encodes every split of `clips` with `tokenizer` into `tokens`."""
    splits = {s: artifacts.split_pattern(clips, s) for s in artifacts.split_names(clips)}
    with progress.stage("Pretokenizer", f"encoding {', '.join(splits)} clips into tokens"):
        stats = run_pretokenize(splits, tokenizer.uri, tokens.uri, batch_size=batch_size,
                                conditions=tuple(config_param.loads_list(conditions)),
                                condition_frames=condition_frames,
                                beam_args=config_param.loads_list(beam_args))
    artifacts.set_splits(tokens, {s: f"{s}/{TOKENS_PREFIX}-*" for s in splits})
    artifacts.set_numbers(tokens, {s: {k: v for k, v in st.items()
                                       if k in ("clips", "failures", "codebook_usage", "perplexity")}
                                   for s, st in stats.items()})
    tokens.set_string_custom_property("tokenizer_id", next(iter(stats.values()))["tokenizer_id"])
