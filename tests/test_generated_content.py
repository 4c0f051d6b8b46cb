"""PSNR / SSIM of generated content only (magvit/metrics/reconstruction.py generated_*)."""
import numpy as np
import pytest

from magvit.metrics import reconstruction
from magvit.transformer import tasks

NOISE = 8  # +-8 grey levels on every generated pixel: PSNR 20 log10(255 / 8) = 30.07 dB
NOISE_PSNR = 20 * np.log10(255 / NOISE)


def _clip(t=8, size=32, seed=0):
    # Values in [16, 239]: adding +-8 never clips, so the MSE is exactly 8^2.
    return np.random.default_rng(seed).integers(16, 240, (t, size, size, 3), dtype=np.uint8)


def _with_noise(real, generated_mask):
    signs = np.where(np.random.default_rng(1).random(real.shape) < 0.5, -1, 1)
    noisy = real.astype(int) + NOISE * signs * generated_mask[..., None]
    return noisy.astype(np.uint8)


def test_exact_condition_frames_do_not_inflate_psnr():
    real = _clip()
    task = tasks.get_task("frame_prediction", 1)
    mask = reconstruction.generated_mask(task, real.shape[:3])
    assert mask[0].sum() == 0 and mask[1:].all()  # frame 0 is the condition
    generated = _with_noise(real, mask)
    assert reconstruction.generated_psnr(real, generated, mask) == pytest.approx(NOISE_PSNR,
                                                                                 abs=1e-3)
    # The old average over all frames counts the pasted condition frame as 100 dB.
    inflated = np.mean(reconstruction.psnr(real, generated))
    assert inflated == pytest.approx((100 + 7 * NOISE_PSNR) / 8, abs=1e-3)


def test_frame_interpolation_scores_the_frames_between():
    real = _clip()
    task = tasks.get_task("frame_interpolation")
    mask = reconstruction.generated_mask(task, real.shape[:3])
    assert not mask[0].any() and not mask[-1].any() and mask[1:-1].all()
    generated = _with_noise(real, mask)
    assert reconstruction.generated_psnr(real, generated, mask) == pytest.approx(NOISE_PSNR,
                                                                                 abs=1e-3)


def test_inpainting_psnr_is_from_the_mse_over_the_hole_only():
    real = _clip()
    task = tasks.get_task("inpainting_c")
    mask = reconstruction.generated_mask(task, real.shape[:3])
    assert mask.sum() == 8 * 16 * 16  # the central half of rows and columns
    generated = _with_noise(real, mask)
    assert reconstruction.generated_psnr(real, generated, mask) == pytest.approx(NOISE_PSNR,
                                                                                 abs=1e-3)
    # Over whole frames the MSE is diluted 4x: 6 dB better than the truth.
    whole = np.mean(reconstruction.psnr(real, generated))
    assert whole == pytest.approx(NOISE_PSNR + 10 * np.log10(4), abs=1e-3)


def test_outpainting_ssim_ignores_the_exact_known_box():
    real = _clip(size=48)
    task = tasks.get_task("outpainting_c")
    mask = reconstruction.generated_mask(task, real.shape[:3])
    generated = _with_noise(real, mask)
    assert reconstruction.generated_ssim(real, real, mask) == pytest.approx(1.0, abs=1e-5)
    honest = reconstruction.generated_ssim(real, generated, mask)
    whole = np.mean(reconstruction.ssim(real, generated))
    assert honest < whole < 1.0
    # Windows centred on the known box alone would score ~1: they are left out.
    centre = ~mask
    assert reconstruction.generated_ssim(real, generated, centre) > honest


def test_reconstruction_scores_every_pixel_as_before():
    real, other = _clip(seed=0), _clip(seed=3)
    mask = reconstruction.generated_mask(None, real.shape[:3])
    assert mask.all()
    np.testing.assert_allclose(reconstruction.generated_psnr(real, other, mask),
                               np.mean(reconstruction.psnr(real, other)), rtol=1e-6)
    np.testing.assert_allclose(reconstruction.generated_ssim(real, other, mask),
                               np.mean(reconstruction.ssim(real, other)), rtol=1e-5)


def test_batches_and_bad_masks():
    real = np.stack([_clip(seed=0), _clip(seed=1)])
    mask = reconstruction.generated_mask(tasks.get_task("frame_prediction", 1), real.shape[1:4])
    generated = np.stack([_with_noise(r, mask) for r in real])
    np.testing.assert_allclose(reconstruction.generated_psnr(real, generated, mask),
                               [NOISE_PSNR, NOISE_PSNR], atol=1e-3)
    with pytest.raises(ValueError, match=r"mask of generated pixels \(8, 16, 16\) does not match"):
        reconstruction.generated_psnr(real[0], generated[0], np.ones((8, 16, 16), bool))
    with pytest.raises(ValueError, match="no generated pixels"):
        reconstruction.generated_psnr(real[0], generated[0], np.zeros((8, 32, 32), bool))
