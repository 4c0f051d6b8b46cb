"""magvit/random_bits.py: jax.random.bits's and jax.random.bernoulli's values, bit for bit, from
Threefry-2x32 written out as plain uint32 arithmetic (one fusable loop instead of JAX's CPU while
loop); JAX's own functions for keys of other generators."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magvit import random_bits

KEYS = {"raw": jax.random.PRNGKey(0), "raw, split": jax.random.split(jax.random.PRNGKey(5))[1],
        "typed": jax.random.key(123), "rbg": jax.random.key(7, impl="rbg")}


@pytest.mark.parametrize("name", sorted(KEYS))
def test_words_equal_jax_random_bits(name):
    key = KEYS[name]
    draw = jax.jit(random_bits.uint32_bits, static_argnums=1)
    for n in (1, 2, 7, 1000, 100_001):
        words = np.asarray(draw(key, n))
        assert words.dtype == np.uint32 and words.shape == (n,)
        np.testing.assert_array_equal(words, np.asarray(jax.random.bits(key, (n,), jnp.uint32)))
    assert len(np.unique(words)) > 0.99 * n                  # not a constant or a short cycle


@pytest.mark.parametrize("name", sorted(KEYS))
def test_bernoulli_equals_jax_random_bernoulli(name):
    key = KEYS[name]
    for p, shape in ((0.9, (3, 5, 7)), (0.5, (64, 65)), (0.1, (1001,)), (0.0, (9,)), (1.0, (9,))):
        kept = np.asarray(jax.jit(random_bits.bernoulli, static_argnums=(1, 2))(key, p, shape))
        assert kept.dtype == np.bool_ and kept.shape == shape
        np.testing.assert_array_equal(kept, np.asarray(jax.random.bernoulli(key, p, shape)))
    assert kept.sum() == 9
    large = np.asarray(random_bits.bernoulli(key, 0.9, (1000, 1000)))
    assert large.mean() == pytest.approx(0.9, abs=0.002)


def test_other_generators_and_settings_fall_back_to_jax():
    assert random_bits._fusable_key_words(KEYS["rbg"], 99) is None
    assert random_bits._fusable_key_words(jnp.zeros(4, jnp.uint32), 99) is None   # a raw rbg key
    assert random_bits._fusable_key_words(KEYS["raw"], 2 ** 32) is None   # counters past 32 bits
    np.testing.assert_array_equal(random_bits._fusable_key_words(KEYS["typed"], 99),
                                  jax.random.key_data(KEYS["typed"]))
    with jax.enable_x64(True):
        assert random_bits._fusable_key_words(KEYS["raw"], 99) is None
        np.testing.assert_array_equal(random_bits.bernoulli(KEYS["raw"], 0.5, (99,)),
                                      jax.random.bernoulli(KEYS["raw"], 0.5, (99,)))
    with jax.threefry_partitionable(False):
        assert random_bits._fusable_key_words(KEYS["raw"], 99) is None
        np.testing.assert_array_equal(random_bits.uint32_bits(KEYS["raw"], 99),
                                      jax.random.bits(KEYS["raw"], (99,), jnp.uint32))


def test_one_loop_without_a_while():
    """The point of the module: the hash compiles into the consumer's loop, with no while loop
    (JAX's CPU lowering of jax.random.bits has one)."""
    ours = jax.jit(lambda k: random_bits.bernoulli(k, 0.9, (64, 64))).lower(KEYS["raw"])
    theirs = jax.jit(lambda k: jax.random.bernoulli(k, 0.9, (64, 64))).lower(KEYS["raw"])
    assert " while(" not in ours.compile().as_text()
    if jax.default_backend() == "cpu":
        assert " while(" in theirs.compile().as_text()
