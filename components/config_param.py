"""Configs as TFX execution parameters: the sections a stage reads, as canonical JSON.

A stage gets only the sections it depends on (the tokenizer trainer never sees `transformer`), so
TFX caching reruns exactly the stages whose part of the config changed. JSON has no tuples; the
configs use tuples for every sequence, so lists come back as tuples.
"""
import json

import ml_collections

ALWAYS = ("name", "seed")


def dumps(config: ml_collections.ConfigDict, sections: tuple[str, ...]) -> str:
    """Canonical JSON (sorted keys) of `name`, `seed` and the given top-level sections."""
    part = {}
    for key in ALWAYS + tuple(sections):
        value = config[key]
        part[key] = value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value
    return json.dumps(part, sort_keys=True)


def loads(text: str) -> ml_collections.ConfigDict:
    """The ConfigDict `dumps` wrote (sequences as tuples)."""
    return ml_collections.ConfigDict(_with_tuples(json.loads(text)))


def _with_tuples(value):
    if isinstance(value, dict):
        return {k: _with_tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_with_tuples(v) for v in value)
    return value


def dumps_list(values: list[str]) -> str:
    return json.dumps(list(values))


def loads_list(text: str) -> list[str]:
    return list(json.loads(text)) if text else []
