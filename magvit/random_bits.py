"""`uint32_bits`, `bernoulli`: jax.random.bits's and jax.random.bernoulli's values, fusable.

JAX's default generator hashes each counter with Threefry-2x32 (Salmon et al., SC 2011: 20 rounds
of add / rotate / xor, a key injection after every 4). On a CPU, JAX lowers that hash as a while
loop of 5 iterations, to compile faster, and XLA then writes the whole 2 x n state to memory after
each iteration and copies it between them. Written here as plain uint32 arithmetic on an iota, the
20 rounds fuse with the counter into one loop that keeps the state in registers: the 12.6 million
words of one bair_b transformer layer's attention-dropout mask take 33 ms instead of 165 ms on 2
CPU cores (bench/bench_dropout.py). The bits are the same as jax.random.bits's under JAX's
defaults (the threefry2x32 generator with `jax_threefry_partitionable`, where word i hashes the
counter pair (0, i) and is the xor of the two outputs); for other generators or settings
(`jax_enable_x64` included, where bernoulli's floats are float64), and for n >= 2**32, these are
JAX's own functions. `bernoulli` builds jax.random.bernoulli's floats from them
(its 'low' mode: the top 23 bits of a word as the mantissa of a float in [1, 2), minus 1) and can
fuse into whatever uses the mask, such as the select of a dropout.
"""
import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))   # Threefry-2x32's, alternating every 4 rounds
_PARITY = np.uint32(0x1BD11BDA)                      # Threefish's key-schedule constant


def uint32_bits(key, n: int) -> jnp.ndarray:
    """uint32 [n]: jax.random.bits(key, (n,), jnp.uint32), computed without a loop where the
    generator is JAX's default threefry (a raw uint32[2] key or a typed threefry key)."""
    words = _fusable_key_words(key, n)
    if words is None:
        return jax.random.bits(key, (n,), jnp.uint32)
    return _threefry_words(words, n)


def bernoulli(key, p: float, shape) -> jnp.ndarray:
    """bool `shape`: jax.random.bernoulli(key, p, shape), True with probability p (a float)."""
    n = int(np.prod(shape))
    words = _fusable_key_words(key, n)
    if words is None:
        return jax.random.bernoulli(key, p, shape)
    mantissa = (_threefry_words(words, n) >> np.uint32(9)) | np.uint32(0x3F800000)  # [1, 2)
    uniform = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - np.float32(1.0)
    return (uniform < np.float32(p)).reshape(shape)


def _threefry_words(key_words, n: int) -> jnp.ndarray:
    """Word i of JAX's partitionable threefry: Threefry-2x32 of the counter pair (0, i) under
    the key words (k0, k1), its two outputs xor-ed."""
    k0, k1 = key_words[0], key_words[1]
    schedule = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0 = jnp.full((n,), k0, jnp.uint32)                  # the counter's high word, 0, plus k0
    x1 = jax.lax.iota(jnp.uint32, n) + k1                 # its low word, i, plus k1
    for injection in range(1, 6):
        for rotation in _ROTATIONS[(injection - 1) % 2]:
            x0 = x0 + x1
            x1 = ((x1 << np.uint32(rotation)) | (x1 >> np.uint32(32 - rotation))) ^ x0
        x0 = x0 + schedule[injection % 3]
        x1 = x1 + schedule[(injection + 1) % 3] + np.uint32(injection)
    return x0 ^ x1


def _fusable_key_words(key, n: int):
    """The uint32[2] words of a threefry key under JAX's partitionable scheme, for fewer than
    2**32 words; None where JAX's own functions must draw them."""
    if (n >= 2 ** 32 or not jax.config.jax_threefry_partitionable
            or jax.config.jax_enable_x64):
        return None
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != "threefry2x32" or key.shape:
            return None
        return jax.random.key_data(key)
    if (key.shape != (2,) or key.dtype != jnp.uint32
            or jax.config.jax_default_prng_impl != "threefry2x32"):
        return None
    return key
