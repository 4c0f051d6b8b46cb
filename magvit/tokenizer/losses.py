"""Tokenizer losses: reconstruction, non-saturating GAN, R1 gradient penalty, LeCam regularisation
(the perceptual loss, which needs a frozen ResNet-50, is in `perceptual.py`).

Logits are the discriminator's raw outputs (one per clip). LeCam (Tseng et al. 2021) keeps EMAs of
the discriminator's mean real and fake outputs and penalises outputs that cross them:
  R_LC = E[relu(D(x) - ema_fake)^2] + E[relu(ema_real - D(G(z)))^2].
"""
import jax
import jax.numpy as jnp


def reconstruction_loss(original, reconstructed):
    """Mean squared error (the official configs' L2 reconstruction loss)."""
    return jnp.mean(jnp.square(original - reconstructed))


def generator_adversarial_loss(fake_logits):
    """Non-saturating: -log sigmoid(D(G(z)))."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def discriminator_loss(real_logits, fake_logits):
    """-log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def r1_penalty(discriminator_fn, real, gamma: float):
    """gamma / 2 * E ||d D(x) / d x||^2 over real inputs; returns (penalty, D(real) logits)."""
    def total(x):
        logits = discriminator_fn(x)
        return jnp.sum(logits), logits
    grads, logits = jax.grad(total, has_aux=True)(real)
    squared_norm = jnp.sum(jnp.square(grads).reshape(grads.shape[0], -1), axis=1)
    return 0.5 * gamma * jnp.mean(squared_norm), logits


def lecam_regularization(real_logits, fake_logits, ema_real, ema_fake):
    return (jnp.mean(jnp.square(jax.nn.relu(real_logits - ema_fake)))
            + jnp.mean(jnp.square(jax.nn.relu(ema_real - fake_logits))))


def lecam_ema_update(ema: dict, real_logits, fake_logits, decay: float) -> dict:
    """ema = {"real": ..., "fake": ...} moved towards this batch's mean logits."""
    return {"real": decay * ema["real"] + (1 - decay) * jnp.mean(real_logits),
            "fake": decay * ema["fake"] + (1 - decay) * jnp.mean(fake_logits)}

