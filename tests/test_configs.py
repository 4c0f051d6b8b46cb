"""Configs: every paper setting, the numbers the paper gives, and command-line overrides."""
import pytest

from magvit.configs import NAMES, get_config
from magvit.configs.flags import normalize_argv, parse_config, SETTINGS_FILE


def test_every_setting_loads_and_names_its_sections():
    videos = {"bair_b", "bair_l", "bair_multitask_b", "bair_multitask_l", "ucf101_b", "ucf101_l",
              "kinetics600_b", "kinetics600_l", "ssv2_b", "ssv2_l", "tiny"}
    assert set(NAMES) == videos | {f"{name}_image" for name in videos}  # + the 2D tokenizers
    for name in NAMES:
        config = get_config(name)
        assert config.name == name
        assert set(config.keys()) >= {"dataset", "tokenizer", "transformer", "eval", "seed"}


@pytest.mark.parametrize("name, resolution, multipliers, disc", [
    ("bair_b", 64, (1, 2, 4), (2, 4, 4, 4)),
    ("ucf101_b", 128, (1, 2, 2, 4), (2, 4, 4, 4, 4)),
    ("kinetics600_l", 128, (1, 2, 2, 4), (2, 4, 4, 4, 4)),
    ("ssv2_l", 128, (1, 2, 2, 4), (2, 4, 4, 4, 4)),
])
def test_paper_tokenizer_numbers(name, resolution, multipliers, disc):
    config = get_config(name)
    model = config.tokenizer.model
    assert config.dataset.resolution == resolution and config.dataset.num_frames == 16
    assert tuple(model.channel_multipliers) == multipliers
    assert tuple(config.tokenizer.discriminator.channel_multipliers) == disc
    assert model.filters == (64 if name.endswith("_b") else 128) and model.patch_size == 1
    assert (model.embedding_dim, model.codebook_size, model.num_res_blocks) == (256, 1024, 2)
    # two temporal downsamplings (16 -> 4 frames), spatial down to 16x16
    assert sum(model.temporal_downsample) == 2
    assert resolution // 2 ** (len(multipliers) - 1) == 16
    assert (model.commitment_cost, model.entropy_loss_ratio, model.entropy_temperature) == (0.25, 0.1, 0.01)
    opt = config.tokenizer.optimizer
    assert (opt.learning_rate, opt.b1, opt.b2, opt.ema_decay) == (1e-4, 0.0, 0.99, 0.999)
    loss = config.tokenizer.loss
    assert (loss.generator_adversarial_weight, loss.r1_gamma, loss.perceptual_weight) == (0.1, 10.0, 0.1)
    # official: L2 weight 1, LeCam off (batch-mean form when on), R1 without the 1/2
    assert (loss.reconstruction_weight, loss.lecam_weight) == (1.0, 0.0)
    assert (loss.lecam_mode, loss.r1_convention) == ("batch_mean", "official")


@pytest.mark.parametrize("name, tokenizer_steps, tokenizer_warmup, transformer_steps", [
    # steps = epochs * (train size // batch): UCF-101 9,537 clips, BAIR 43,264
    ("ucf101_b", 500 * (9537 // 128), 9537 // 128, 2000 * (9537 // 256)),      # 37,000 / 74,000
    ("ucf101_l", 2000 * (9537 // 256), 9537 // 256, 2000 * (9537 // 256)),     # 74,000 / 74,000
    ("bair_b", 400 * (43264 // 128), 43264 // 128, 400 * (43264 // 256)),      # 135,200 / 67,600
    ("bair_l", 800 * (43264 // 256), 43264 // 256, 800 * (43264 // 256)),     # 135,200 / 135,200
    ("bair_multitask_b", 135_200, 338, 1200 * 169),                           # 202,800
    ("bair_multitask_l", 135_200, 169, 1600 * 169),                           # 270,400
])
def test_official_schedules_per_setting(name, tokenizer_steps, tokenizer_warmup, transformer_steps):
    config = get_config(name)
    assert config.tokenizer.training.num_train_steps == tokenizer_steps
    assert config.tokenizer.optimizer.warmup_steps == tokenizer_warmup
    assert config.transformer.training.num_train_steps == transformer_steps
    assert config.transformer.optimizer.warmup_steps == 5000
    assert (37_000, 74_000, 135_200, 67_600, 202_800, 270_400) == (
        500 * 74, 2000 * 37, 400 * 338, 400 * 169, 1200 * 169, 1600 * 169)


def test_official_transformer_and_decoding_defaults():
    t = get_config("bair_multitask_b").transformer
    assert not t.decoding.paste_condition and t.decoding.condition_mode == "refine"
    assert (t.decoding.temperature, t.decoding.top_k, t.decoding.top_p) == (1.0, 0, 0.0)
    assert t.decoding.guidance_scale == 0.0 and t.decoding.mask_schedule == "cosine"
    assert not t.model.use_condition_segment
    assert (t.task_sampling, t.mask_ratio_sampling) == ("per_step", "per_batch")


@pytest.mark.parametrize("name, shape", [("bair_b", (12, 768, 3072, 12)), ("ssv2_l", (24, 1024, 4096, 16))])
def test_paper_transformer_numbers(name, shape):
    t = get_config(name).transformer
    assert (t.model.num_layers, t.model.hidden_size, t.model.mlp_dim, t.model.num_heads) == shape
    assert (t.model.dropout_rate, t.model.attention_dropout_rate) == (0.1, 0.1)
    opt = t.optimizer
    assert (opt.b1, opt.b2, opt.weight_decay, opt.learning_rate, opt.warmup_steps) == (0.9, 0.96, 0.045, 1e-4, 5000)
    assert (t.decoding.num_steps, t.decoding.choice_temperature) == (12, 4.5)
    assert t.label_smoothing == 1e-4


def test_task_lists_and_condition_frames():
    assert len(get_config("bair_multitask_b").transformer.tasks) == 8
    assert len(get_config("ssv2_b").transformer.tasks) == 10
    assert get_config("kinetics600_b").transformer.condition_frames == 5
    assert get_config("bair_b").transformer.condition_frames == 1


def test_command_line_name_and_overrides():
    config = parse_config(["--config=bair_l", "--config.tokenizer.model.codebook_size=512",
                           "--config.dataset.clip_policy=center"])
    assert config.name == "bair_l"
    assert config.tokenizer.model.codebook_size == 512
    assert config.dataset.clip_policy == "center"
    assert parse_config(["--config", "ucf101_b"]).dataset.name == "ucf101"
    assert parse_config([f"--config={SETTINGS_FILE}:ssv2_b"]).name == "ssv2_b"


def test_override_type_is_checked_and_unknown_keys_rejected():
    with pytest.raises(Exception, match="codebook_size"):
        parse_config(["--config=tiny", "--config.tokenizer.model.codebook_size=many"])
    with pytest.raises(Exception, match="no_such_key"):
        parse_config(["--config=tiny", "--config.tokenizer.no_such_key=1"])


def test_unknown_setting_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown config 'bair_xl'"):
        get_config("bair_xl")


def test_normalize_argv_leaves_other_flags():
    argv = normalize_argv(["--config=tiny", "--runner=DirectRunner", "--config.seed=3"])
    assert argv[0] == f"--config={SETTINGS_FILE}:tiny" and argv[1:] == ["--runner=DirectRunner", "--config.seed=3"]


def test_overrides_without_config_apply_to_the_default():
    config = parse_config(["--config.tokenizer.training.batch_size=2"])
    assert config.name == "tiny" and config.tokenizer.training.batch_size == 2
