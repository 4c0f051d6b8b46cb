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
_VIDEO_NAMES = tuple(f"{name}_{size.lower()}" for name in _SETTINGS for size in ("B", "L"))
# `<setting>_image`: the same setting with the 2D image tokenizer (the first stage of the
# official image-to-video initialisation: its work directory is then the video setting's
# `--config.tokenizer.model.init_from_2d`).
IMAGE_SUFFIX = "_image"
NAMES = _VIDEO_NAMES + ("tiny",) + tuple(n + IMAGE_SUFFIX for n in _VIDEO_NAMES + ("tiny",))

# Training schedules of the released official configs, in epochs of the training split
# (steps = epochs * (train size // batch size)). Tokenizer: `vqgan3d_{ucf101,bair}_config.py`,
# warm-up 1 epoch; transformer: `maskgvt_{ucf101,bair,bair_multitask}_config.py`, warm-up 5,000
# steps. Kinetics-600 and SSv2 have no released config: their schedules are the section defaults.
_TRAIN_SIZES = {"ucf101": 9_537, "bair": 43_264}
_TOKENIZER_EPOCHS = {"ucf101": {"B": 500, "L": 2000}, "bair": {"B": 400, "L": 800}}
_TRANSFORMER_EPOCHS = {"ucf101": {"B": 2000, "L": 2000}, "bair": {"B": 400, "L": 800},
                       "bair_multitask": {"B": 1200, "L": 1600}}


def _compose(name, dataset, size, tasks, condition_frames, num_samples, num_frames=16):
    data = dataset_config(dataset, num_frames=num_frames)
    config = ml_collections.ConfigDict()
    config.name = name
    config.seed = 0
    config.dataset = data
    config.tokenizer = tokenizer_config(size, data.resolution, num_frames)
    config.transformer = transformer_config(size, tasks, condition_frames)
    config.eval = eval_config(num_samples)
    _official_schedules(config, name.rpartition("_")[0], dataset, size)
    return config


def _official_schedules(config, setting: str, dataset: str, size: str) -> None:
    if dataset not in _TRAIN_SIZES:
        return
    tokenizer, transformer = config.tokenizer, config.transformer
    epoch = _TRAIN_SIZES[dataset] // tokenizer.training.batch_size
    tokenizer.training.num_train_steps = _TOKENIZER_EPOCHS[dataset][size] * epoch
    tokenizer.optimizer.warmup_steps = epoch
    epoch = _TRAIN_SIZES[dataset] // transformer.training.batch_size
    transformer.training.num_train_steps = _TRANSFORMER_EPOCHS[setting][size] * epoch
    transformer.optimizer.warmup_steps = 5000


def _tiny() -> ml_collections.ConfigDict:
    """The demo setting: CPU-sized, tuned so README command 1 visibly learns in a few minutes.

    Its own values, set here (the shared section builders keep the official defaults):
    8x32x32 clips -> 4x8x8 tokens (time pooled once, so each token spans 2 frames, not 4: a moving
    shape's path survives tokenization), 1024 codes, a 2x2-patch first layer; one task, frame
    prediction from the first half of the clip (4 frames: the shape's speed and direction are
    visible, so its future is predictable), scored on all 16 test clips. More tasks:
    `--config.transformer.tasks=(...)`; at this size, five tasks in 900 steps left frame
    prediction at the copy-the-last-frame baseline (19.6 dB against 19.6), one task beat it (20.1).
    """
    config = _compose("tiny", "demo", "tiny", ("frame_prediction",), 4, 16, num_frames=8)
    # 39 train + 1 test video per class: 624 + 16 clips. The videos cost little to make, and with
    # 9 per class the tokenizer's test PSNR trailed its training PSNR by ~1 dB.
    config.dataset.demo_videos_per_class = 40
    model = config.tokenizer.model
    # The first level sees 2x2 pixel patches (space-to-depth) instead of a full-resolution level:
    # 16 -> 32 -> 64 channels at 16x16 then 8x8, one downsampling (time pooled there). The step
    # costs 0.44 s instead of 0.75 s (bench/bench_train.py --config=tiny --batch=4, 2 cores, with
    # the matmul kernel gradient from 64 px), so more steps fit in the same time, and
    # reach a higher PSNR (README, "Differences").
    model.patch_size = 2
    model.channel_multipliers = (2, 4)
    model.temporal_downsample = (True,)
    model.codebook_size = 1024                    # the product's codebook size (256: -0.4 dB)
    # One clip per step, 1500 steps: at this size the number of updates matters more than the
    # batch (2 cores, 8 test clips: batch 4 x 450 steps 23.7 dB in 73 s of steps, 2 x 900 26.8 in
    # 71 s, 1 x 1800 28.0 in 82 s; 1 x 1500 reached 27.1 dB on all 16 test clips).
    config.tokenizer.training.batch_size = 1
    config.tokenizer.training.num_train_steps = 1500
    config.tokenizer.training.eval_batches = 16   # all 16 test clips
    # A checkpoint every 500 steps, not 100: each orbax save costs this 2-core run ~1.7 s of
    # training (tokenizer, 400 steps: 45.4 s saving every 100, 38.8 s saving at the end only).
    config.tokenizer.training.checkpoint_every_steps = 500
    config.tokenizer.optimizer.ema_decay = 0.95   # ~20-step average (0.99: -0.5 dB at 450 steps)
    # The VQ terms (entropy loss ~ -0.1 log K) would otherwise outweigh a reconstruction error of
    # ~0.01 on clips that are mostly background; this weight keeps reconstruction in charge.
    config.tokenizer.loss.reconstruction_weight = 10.0
    transformer = config.transformer
    transformer.model.dropout_rate = 0.0         # a few hundred steps: no dropout
    transformer.model.attention_dropout_rate = 0.0
    transformer.training.num_train_steps = 900   # 300 steps: 18.4 dB, below copy-last (19.6)
    # 900 steps on the 1500-step tokenizer's tokens, width 64: masked accuracy 48% at 1e-3, 57%
    # at 3e-3 (frame prediction PSNR 20.3 -> 20.8 dB against copy-last 19.6); width 128 at 3e-3:
    # 65%, 22.9 dB
    transformer.optimizer.learning_rate = 3e-3
    transformer.training.checkpoint_every_steps = 500   # as the tokenizer's
    config.eval.repeats = 1
    return config


def get_config(name: str = "tiny") -> ml_collections.ConfigDict:
    """Returns the named setting (see NAMES): e.g. `bair_b`, `ucf101_l`, `tiny`, `tiny_image`."""
    if name.endswith(IMAGE_SUFFIX) and name in NAMES:
        config = get_config(name[:-len(IMAGE_SUFFIX)])
        config.name = name
        config.tokenizer.model.spatial_dims = 2
        return config
    if name == "tiny":
        return _tiny()
    base, _, size = name.rpartition("_")
    if base not in _SETTINGS or size not in ("b", "l"):
        raise ValueError(f"unknown config {name!r}; expected one of {', '.join(NAMES)}")
    return _compose(name, *(_SETTINGS[base][:1] + (size.upper(),) + _SETTINGS[base][1:]))


def get_config_from_arg(arg: str | None = None) -> ml_collections.ConfigDict:
    """Entry for ml_collections config files: `path/to/settings.py:NAME`."""
    return get_config(arg or "tiny")
