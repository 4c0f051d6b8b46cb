"""Tokenizer losses: reconstruction, non-saturating GAN, R1 gradient penalty, LeCam regularisation
(the perceptual loss, which needs a frozen ResNet-50, is in `perceptual.py`).

Logits are the discriminator's raw outputs (one per clip). LeCam (Tseng et al. 2021) keeps EMAs of
the discriminator's mean real and fake outputs and penalises outputs that cross them. Official
(`losses.lecam_reg`, on batch-mean logits):
  R_LC = relu(mean D(x) - ema_fake)^2 + relu(ema_real - mean D(G(z)))^2
mode "per_sample" (a departure): E[relu(D(x) - ema_fake)^2] + E[relu(ema_real - D(G(z)))^2].
The R1 penalty is gamma * E||d D(x)/dx||^2 (official `r1_gradient_penalty`, no 1/2); the
"stylegan" convention halves it.
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


R1_CONVENTIONS = {"official": 1.0, "stylegan": 0.5}
LECAM_MODES = ("batch_mean", "per_sample")


def r1_penalty(discriminator_fn, real, gamma: float, convention: str = "official"):
    """gamma * E ||d D(x) / d x||^2 over real inputs (x 1/2 for "stylegan");
    returns (penalty, D(real) logits)."""
    if convention not in R1_CONVENTIONS:
        raise ValueError(f"tokenizer.loss.r1_convention={convention!r}: expected one of "
                         f"{', '.join(R1_CONVENTIONS)}")
    def total(x):
        logits = discriminator_fn(x)
        return jnp.sum(logits), logits
    grads, logits = jax.grad(total, has_aux=True)(real)
    squared_norm = jnp.sum(jnp.square(grads).reshape(grads.shape[0], -1), axis=1)
    return R1_CONVENTIONS[convention] * gamma * jnp.mean(squared_norm), logits


def lecam_regularization(real_logits, fake_logits, ema_real, ema_fake, mode: str = "batch_mean"):
    if mode not in LECAM_MODES:
        raise ValueError(f"tokenizer.loss.lecam_mode={mode!r}: expected one of "
                         f"{', '.join(LECAM_MODES)}")
    if mode == "batch_mean":
        real_logits, fake_logits = jnp.mean(real_logits), jnp.mean(fake_logits)
    return (jnp.mean(jnp.square(jax.nn.relu(real_logits - ema_fake)))
            + jnp.mean(jnp.square(jax.nn.relu(ema_real - fake_logits))))


def lecam_ema_update(ema: dict, real_logits, fake_logits, decay: float) -> dict:
    """ema = {"real": ..., "fake": ...} moved towards this batch's mean logits."""
    return {"real": decay * ema["real"] + (1 - decay) * jnp.mean(real_logits),
            "fake": decay * ema["fake"] + (1 - decay) * jnp.mean(fake_logits)}

