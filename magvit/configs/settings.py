"""The named settings: one per paper setting (dataset x model size) plus `tiny`."""
import ml_collections

from magvit.configs.dataset import dataset_config
from magvit.configs.evaluation import eval_config
from magvit.configs.tokenizer import tokenizer_config
from magvit.configs.transformer import BAIR_TASKS, SSV2_TASKS, transformer_config

# name -> (dataset, size, transformer tasks, frame-prediction condition frames, FVD samples)
_SETTINGS = {
    "bair": ("bair", ("frame_prediction",), 1, 2560),
    "bair_multitask": ("bair", BAIR_TASKS, 1, 2560),
    "ucf101": ("ucf101", ("class_conditional",), 1, 10_000),
    "kinetics600": ("kinetics600", ("frame_prediction",), 5, 50_000),
    "ssv2": ("ssv2", SSV2_TASKS, 1, 50_000),
}
NAMES = tuple(f"{name}_{size.lower()}" for name in _SETTINGS for size in ("B", "L")) + ("tiny",)


def _compose(name, dataset, size, tasks, condition_frames, num_samples, num_frames=16):
    data = dataset_config(dataset, num_frames=num_frames)
    config = ml_collections.ConfigDict()
    config.name = name
    config.seed = 0
    config.dataset = data
    config.tokenizer = tokenizer_config(size, data.resolution, num_frames)
    config.transformer = transformer_config(size, tasks, condition_frames)
    config.eval = eval_config(num_samples)
    return config


def get_config(name: str = "tiny") -> ml_collections.ConfigDict:
    """Returns the named setting (see NAMES): e.g. `bair_b`, `ucf101_l`, `tiny`."""
    if name == "tiny":
        config = _compose("tiny", "demo", "tiny", ("frame_prediction", "frame_interpolation",
                          "inpainting_c", "outpainting_c", "class_conditional"), 1, 4, num_frames=8)
        config.eval.repeats = 1
        config.eval.batch_size = 4
        return config
    base, _, size = name.rpartition("_")
    if base not in _SETTINGS or size not in ("b", "l"):
        raise ValueError(f"unknown config {name!r}; expected one of {', '.join(NAMES)}")
    return _compose(name, *(_SETTINGS[base][:1] + (size.upper(),) + _SETTINGS[base][1:]))


def get_config_from_arg(arg: str | None = None) -> ml_collections.ConfigDict:
    """Entry for ml_collections config files: `path/to/settings.py:NAME`."""
    return get_config(arg or "tiny")
