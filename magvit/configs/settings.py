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


def _tiny() -> ml_collections.ConfigDict:
    """The demo setting: CPU-sized, tuned so README command 1 visibly learns in a few minutes.

    Its own values, set here (the shared section builders keep the official defaults):
    8x32x32 clips -> 4x8x8 tokens (time pooled once, so each token spans 2 frames, not 4: a moving
    shape's path survives tokenization), 256 codes; frame prediction from the first half of the
    clip (4 frames: the shape's speed and direction are visible, so its future is predictable).
    """
    config = _compose("tiny", "demo", "tiny", ("frame_prediction", "frame_interpolation",
                      "inpainting_c", "outpainting_c", "class_conditional"), 4, 4, num_frames=8)
    config.dataset.demo_videos_per_class = 10   # 9 train + 1 test video per class: 144 + 16 clips
    model = config.tokenizer.model
    model.temporal_downsample = (True, False)
    model.codebook_size = 256
    # The VQ terms (entropy loss ~ -0.1 log K) would otherwise outweigh a reconstruction error of
    # ~0.01 on clips that are mostly background; this weight keeps reconstruction in charge.
    config.tokenizer.loss.reconstruction_weight = 10.0
    transformer = config.transformer
    transformer.model.dropout_rate = 0.0         # a few hundred steps on 144 clips: no dropout
    transformer.model.attention_dropout_rate = 0.0
    config.eval.repeats = 1
    config.eval.batch_size = 4
    config.eval.allow_random_i3d = True   # no I3D weights on a demo machine: smoke-test FVD
    return config


def get_config(name: str = "tiny") -> ml_collections.ConfigDict:
    """Returns the named setting (see NAMES): e.g. `bair_b`, `ucf101_l`, `tiny`."""
    if name == "tiny":
        return _tiny()
    base, _, size = name.rpartition("_")
    if base not in _SETTINGS or size not in ("b", "l"):
        raise ValueError(f"unknown config {name!r}; expected one of {', '.join(NAMES)}")
    return _compose(name, *(_SETTINGS[base][:1] + (size.upper(),) + _SETTINGS[base][1:]))


def get_config_from_arg(arg: str | None = None) -> ml_collections.ConfigDict:
    """Entry for ml_collections config files: `path/to/settings.py:NAME`."""
    return get_config(arg or "tiny")
