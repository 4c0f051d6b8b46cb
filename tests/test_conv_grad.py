"""The CPU convolution's kernel gradient (`magvit.tokenizer.model.conv2d_cpu`, per-row matmuls)
equals lax's convolution gradient; the 3D convolution built on it equals lax's 3D one."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magvit.tokenizer import model


@pytest.mark.parametrize("x_shape, k_shape", [
    ((2, 8, 8, 5), (3, 3, 5, 4)),      # the tokenizer's 3x3
    ((1, 6, 7, 3), (1, 3, 3, 2)),      # 1 x 3, non-square input
    ((2, 5, 5, 4), (4, 4, 4, 3)),      # even kernel: 'SAME' pads 1 low, 2 high
])
def test_conv2d_cpu_values_and_gradients_equal_lax(x_shape, k_shape):
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(*x_shape), jnp.float32)
    kernel = jnp.asarray(rng.randn(*k_shape), jnp.float32)
    dy = jnp.asarray(rng.randn(*x_shape[:3], k_shape[-1]), jnp.float32)
    lax_conv = lambda a, b: jax.lax.conv_general_dilated(  # noqa: E731
        a, b, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_array_equal(model.conv2d_cpu(x, kernel), lax_conv(x, kernel))
    want = jax.grad(lambda a, b: jnp.sum(lax_conv(a, b) * dy), (0, 1))(x, kernel)
    got = jax.grad(lambda a, b: jnp.sum(model.conv2d_cpu(a, b) * dy), (0, 1))(x, kernel)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(got[1]).max()) > 1.0


@pytest.mark.parametrize("width", [6, model.MATMUL_GRAD_MIN_WIDTH])   # lax's / matmul gradient
def test_the_3d_convolution_and_its_gradients_equal_lax_3d(width):
    rng = np.random.RandomState(1)
    x = jnp.asarray(rng.randn(1, 4, 3, width, 3), jnp.float32)
    kernel = jnp.asarray(rng.randn(3, 3, 3, 3, 2), jnp.float32)
    lax3d = lambda a, b: jax.lax.conv_general_dilated(  # noqa: E731
        a, b, (1, 1, 1), "SAME", dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
    assert jax.default_backend() == "cpu"   # convolve takes the 2D route on CPU only
    np.testing.assert_allclose(model.convolve(x, kernel), lax3d(x, kernel), rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda a, b: jnp.sum(jnp.sin(f(a, b)))  # noqa: E731
    want = jax.grad(loss(lax3d), (0, 1))(x, kernel)
    got = jax.grad(loss(model.convolve), (0, 1))(x, kernel)
    for g, w in zip(got, want):   # float32 sums over B*T*H*W terms, in another order
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6 * float(jnp.abs(w).max()))
