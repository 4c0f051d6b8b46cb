"""Conventions shared by the components for what their artifacts carry.

An Examples artifact (clips or tokens) lists its splits in `split_names`, as TFX does, and the
file pattern of each split, relative to the artifact's URI, in the custom property
`split_patterns` (JSON {split: pattern}), so the record layout stays the Beam job's business.
Numbers a stage reports (clip counts, metrics, FVD) become float custom properties, visible in
MLMD and in the Kubeflow / Vertex UI.
"""
import json
import math
import os

from tfx.types import artifact_utils

SPLIT_PATTERNS = "split_patterns"


def set_splits(artifact, patterns: dict[str, str]) -> None:
    """Records the splits of an Examples artifact and their file patterns (relative to its URI)."""
    artifact.split_names = artifact_utils.encode_split_names(sorted(patterns))
    artifact.set_string_custom_property(SPLIT_PATTERNS, json.dumps(patterns, sort_keys=True))


def split_names(artifact) -> list[str]:
    return artifact_utils.decode_split_names(artifact.split_names)


def split_pattern(artifact, split: str) -> str:
    """Absolute file pattern of one split of an Examples artifact written by `set_splits`."""
    patterns = json.loads(artifact.get_string_custom_property(SPLIT_PATTERNS) or "{}")
    if split not in patterns:
        raise ValueError(f"artifact {artifact.uri} has no split {split!r}; it has "
                         f"{', '.join(sorted(patterns)) or 'none'}")
    return os.path.join(artifact.uri, patterns[split])


def set_numbers(artifact, numbers: dict, prefix: str = "") -> None:
    """Stores the finite numeric entries of `numbers` (nested dicts flattened with '/')."""
    for key, value in numbers.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            set_numbers(artifact, value, prefix=f"{name}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            artifact.set_float_custom_property(name, float(value))
