"""Condition regions, condition videos and the vocabulary of every task, on hand-checkable grids."""
import numpy as np
import pytest

from magvit.transformer import tasks

CLIP = (8, 8, 8)      # T, H, W of the pixel clips below
GRID = (2, 4, 4)      # the token grid of the tiny tokenizer for such clips


def _video(seed=0):
    return np.random.RandomState(seed).randint(1, 256, size=(2, *CLIP, 3)).astype(np.uint8)


def _mask(name, shape, condition_frames=1, clip_frames=CLIP[0]):
    return tasks.get_task(name, condition_frames).known_mask(shape, clip_frames)


def test_every_official_task_is_registered():
    assert set(tasks.TASK_NAMES) == {
        "frame_prediction", "frame_interpolation", "outpainting_h", "outpainting_v",
        "outpainting_c", "outpainting_dv", "inpainting_c", "inpainting_dv", "class_conditional",
        "class_conditional_frame_prediction"}
    with pytest.raises(ValueError, match="unknown task 'dancing'"):
        tasks.get_task("dancing")


def test_frame_prediction_keeps_first_frames_and_repeats_the_last_known():
    video = _video()
    cond = tasks.get_task("frame_prediction", 1).condition_video(video)
    assert (cond == video[:, :1]).all()                       # every frame is frame 0
    assert _mask("frame_prediction", CLIP)[:, 0, 0].tolist() == [True] + [False] * 7
    assert _mask("frame_prediction", GRID)[:, 0, 0].tolist() == [True, False]
    # Kinetics-600: 5 of 16 frames -> ceil(5 * 4 / 16) = 2 of 4 token frames.
    assert _mask("frame_prediction", (4, 16, 16), 5, 16)[:, 0, 0].tolist() == [True, True, False, False]
    cond5 = tasks.get_task("frame_prediction", 5).condition_video(
        np.random.RandomState(1).randint(0, 256, (1, 16, 4, 4, 3)).astype(np.uint8))
    assert (cond5[:, 5:] == cond5[:, 4:5]).all()


def test_class_conditional_frame_prediction_is_frame_prediction_with_a_class():
    task = tasks.get_task("class_conditional_frame_prediction", 1)
    assert task.class_conditional
    assert (task.known_mask(GRID, 8) == _mask("frame_prediction", GRID)).all()


def test_frame_interpolation_blends_linearly_between_first_and_last_frame():
    video = np.zeros((1, *CLIP, 3), np.uint8)
    video[:, -1] = 70
    video[:, 0] = 0
    cond = tasks.get_task("frame_interpolation").condition_video(video)
    assert cond[0, :, 0, 0, 0].tolist() == [0, 10, 20, 30, 40, 50, 60, 70]
    assert _mask("frame_interpolation", (4, 2, 2), clip_frames=16)[:, 0, 0].tolist() == [
        True, False, False, True]


def test_central_outpainting_keeps_the_central_box_and_extends_its_edges():
    video = _video()
    cond = tasks.get_task("outpainting_c").condition_video(video)
    assert (cond[:, :, 2:6, 2:6] == video[:, :, 2:6, 2:6]).all()
    assert (cond[:, :, 0, 0] == video[:, :, 2, 2]).all()        # corner = nearest known pixel
    assert (cond[:, :, 7, 4] == video[:, :, 5, 4]).all()
    token_mask = _mask("outpainting_c", GRID)
    assert token_mask[0].astype(int).tolist() == [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]


def test_horizontal_and_vertical_outpainting_keep_the_middle_rows_or_columns():
    video = _video()
    rows = tasks.get_task("outpainting_h").condition_video(video)
    assert (rows[:, :, 2:6] == video[:, :, 2:6]).all() and (rows[:, :, 0] == video[:, :, 2]).all()
    cols = tasks.get_task("outpainting_v").condition_video(video)
    assert (cols[:, :, :, 2:6] == video[:, :, :, 2:6]).all()
    assert (cols[:, :, :, 7] == video[:, :, :, 5]).all()
    assert _mask("outpainting_h", GRID)[1, :, 0].tolist() == [False, True, True, False]
    assert _mask("outpainting_v", GRID)[1, 0, :].tolist() == [False, True, True, False]


def test_dynamic_outpainting_keeps_a_strip_moving_left_to_right():
    video = _video()
    mask = _mask("outpainting_dv", CLIP)
    # Strip start round(linspace(0, 4, 8)) = 0 1 1 2 2 3 3 4, half the width wide.
    assert mask[0, 0].astype(int).tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert mask[7, 0].astype(int).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert (mask == mask[:, :1]).all()                            # same on every row
    cond = tasks.get_task("outpainting_dv").condition_video(video)
    assert (cond[:, 0, :, 4:] == 0).all() and (cond[:, 0, :, :4] == video[:, 0, :, :4]).all()
    assert _mask("outpainting_dv", GRID)[:, 0].astype(int).tolist() == [[1, 1, 0, 0], [0, 0, 1, 1]]


def test_inpainting_blanks_the_central_box_or_a_moving_central_hole():
    video = _video()
    cond = tasks.get_task("inpainting_c").condition_video(video)
    assert (cond[:, :, 2:6, 2:6] == 0).all()
    outside = np.ones(CLIP, bool)
    outside[:, 2:6, 2:6] = False
    assert (cond[:, outside] == video[:, outside]).all()
    hole = ~_mask("inpainting_dv", CLIP)
    assert hole[0].astype(int).tolist() == [[0] * 8] * 2 + [[1, 1, 1, 1, 0, 0, 0, 0]] * 4 + [[0] * 8] * 2
    assert hole[7, 3].astype(int).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    cond = tasks.get_task("inpainting_dv").condition_video(video)
    assert (cond[:, hole] == 0).all() and (cond[:, ~hole] == video[:, ~hole]).all()


def test_class_conditional_has_no_condition_video():
    task = tasks.get_task("class_conditional")
    assert task.class_conditional and not task.has_condition
    assert not task.known_mask(GRID, 8).any()
    with pytest.raises(ValueError, match="no condition video"):
        task.condition_video(_video())
    with pytest.raises(ValueError, match=r"\[B, T, H, W, 3\]"):
        tasks.get_task("frame_prediction").condition_video(np.zeros((8, 8, 8, 3), np.uint8))


def test_vocabulary_layout_and_prefix_tokens():
    # Multi-task (official): 64 codes, 4 classes, "no class" 68, 16 special slots 69..84;
    # [MASK] = size - 1, task tokens size - 3 (full generation), - 4 (FP), - 5 (FI), - 6 (out/in).
    vocab = tasks.Vocabulary(codebook_size=64, num_classes=4,
                             tasks=("frame_prediction", "class_conditional", "outpainting_c",
                                    "inpainting_dv", "frame_interpolation"))
    assert (vocab.no_class_id, vocab.mask_id, vocab.size, vocab.prefix_length) == (68, 84, 85, 2)
    assert [vocab.task_id(t) for t in vocab.tasks] == [81, 82, 79, 79, 80]
    fp, cc = tasks.get_task("frame_prediction"), tasks.get_task("class_conditional")
    assert vocab.prefix(cc, [3, 0]).tolist() == [[82, 67], [82, 64]]
    assert vocab.prefix(fp, [3, 0]).tolist() == [[81, 68], [81, 68]]   # class ignored
    # classifier-free guidance: "no class", and the full-generation task token
    assert vocab.prefix(fp, [3], unconditional=True).tolist() == [[82, 68]]
    with pytest.raises(ValueError, match=r"class 4 out of range \[0, 4\)"):
        vocab.prefix(cc, [4])
    with pytest.raises(ValueError, match="not trained on task 'inpainting_c'"):
        vocab.prefix(tasks.get_task("inpainting_c"), [0])


def test_single_task_vocabulary_has_no_task_token():
    # Official single-task layout (UCF-101 class-conditional): 1024 codes, 101 classes, "no class"
    # 1125, one special slot: [MASK] 1126; the prefix is the class token alone.
    vocab = tasks.Vocabulary(1024, 101, ("class_conditional",))
    assert (vocab.no_class_id, vocab.mask_id, vocab.size, vocab.prefix_length) == (1125, 1126,
                                                                                  1127, 1)
    assert vocab.prefix(tasks.get_task("class_conditional"), [7]).tolist() == [[1031]]
    bair = tasks.Vocabulary(1024, 0, ("frame_prediction",))
    assert (bair.mask_id, bair.size) == (1025, 1026)
    assert bair.prefix(tasks.get_task("frame_prediction"), [0]).tolist() == [[1024]]
    with pytest.raises(ValueError, match="single-task model"):
        bair.task_id("frame_prediction")


def test_condition_latent_frames_of_kinetics():
    # 5 of 16 frames -> ceil(5 * 4 / 16) = 2 of 4 token frames (all 5 frames inside);
    # condition_latent_frames=1 gives the official code's default, one token frame.
    derived = tasks.get_task("frame_prediction", 5)
    assert derived.known_mask((4, 2, 2), 16).any(axis=(1, 2)).tolist() == [True, True, False, False]
    assert derived.known_mask((16, 4, 4), 16).any(axis=(1, 2)).sum() == 5
    one = tasks.get_task("frame_prediction", 5, condition_latent_frames=1)
    assert one.known_mask((4, 2, 2), 16).any(axis=(1, 2)).tolist() == [True, False, False, False]
    assert one.known_mask((16, 4, 4), 16).any(axis=(1, 2)).sum() == 5      # pixels unchanged


def test_official_task_sequence():
    from magvit.train_transformer import task_sequence
    sequence = task_sequence(3, seed=0)
    # equal weights: each task 100 times (100 / min(1, min weight)), a seeded permutation
    assert len(sequence) == 300 and np.bincount(sequence).tolist() == [100, 100, 100]
    assert (sequence == task_sequence(3, seed=0)).all()
    assert not (sequence == np.sort(sequence)).all()
    weighted = task_sequence(2, seed=0, weights=[0.5, 2.0])
    assert np.bincount(weighted).tolist() == [100, 400]
