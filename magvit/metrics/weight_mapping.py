"""The strict check shared by every pretrained-weights loader (I3D, ResNet-50, LPIPS).

A loader maps stored arrays to the network by explicit names; anything short of an exact match
(a missing name, an unexpected one, or a shape that differs) is an error listing all of them,
never a silent partial load.
"""
from typing import Callable, Mapping


def list_names(names, limit: int = 20) -> str:
    """Sorted names, the first `limit` of them, and how many more there are."""
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def mapping_problems(expected: Mapping[str, tuple], stored: Mapping[str, tuple], noun: str,
                     shape_ok: Callable[[str, tuple, tuple], bool] | None = None) -> list[str]:
    """What keeps `stored` ({name: shape}) from matching `expected` ({name: shape}), as phrases:
    missing names, unexpected names, then each name whose shape differs (unless
    `shape_ok(name, stored_shape, expected_shape)` accepts it). Empty when they match."""
    missing, extra = set(expected) - set(stored), set(stored) - set(expected)
    problems = []
    if missing:
        problems.append(f"missing {noun}(s): {list_names(missing)}")
    if extra:
        problems.append(f"unexpected {noun}(s): {list_names(extra)}")
    for name in sorted(set(expected) & set(stored)):
        got, want = tuple(stored[name]), tuple(expected[name])
        if got != want and not (shape_ok and shape_ok(name, got, want)):
            problems.append(f"{noun} {name} has shape {list(got)}, expected {list(want)}")
    return problems
