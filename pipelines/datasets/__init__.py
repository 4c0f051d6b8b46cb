"""Dataset readers, one per native layout, by `dataset.name` (see `common` for what they provide)."""
from pipelines.datasets import bair, common, demo, folder, kinetics, ssv2, ucf101

READERS = {
    "bair": bair,
    "ucf101": ucf101,
    "kinetics600": kinetics,
    "ssv2": ssv2,
    "folder": folder,
    "demo": demo,
}


def get_reader(name: str):
    """The reader module of dataset `name` (raises ValueError naming the known ones)."""
    if name not in READERS:
        raise ValueError(f"--config.dataset.name={name!r}: no reader; expected one of "
                         f"{', '.join(READERS)}")
    return READERS[name]


__all__ = ["READERS", "get_reader", "common"]
