"""Quantizers with one interface: `quantizer(z) -> (quantized, ids, aux)` and `embed(ids)`.

- `VectorQuantizer` (MAGVIT): nearest codebook entry, straight-through gradients, codebook loss
  + commitment cost x commitment loss, and the entropy loss (ratio 0.1, temperature 0.01): the
  softmax entropy of each latent's affinities to the codebook minus the entropy of their batch
  average, which rewards confident assignments spread over the whole codebook.
- `LookupFreeQuantizer` (MAGVIT-v2, LFQ): k binary latents, each quantized to -1 / +1, the code id
  is the k-bit number they spell (2^k codes); commitment loss and the same entropy penalty over the
  2^k codes (the affinity of a latent z to a code c is 2 z.c, i.e. minus the squared distance up to
  a constant).

`aux` holds scalar losses ("quantizer_loss" is the total to add to the generator loss) and the
batch's "perplexity" and "codebook_usage".
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections


def latent_dim(config: ml_collections.ConfigDict) -> int:
    return int(config.lfq_bits) if config.quantizer == "lfq" else int(config.embedding_dim)


def codebook_size(config: ml_collections.ConfigDict) -> int:
    return 2 ** int(config.lfq_bits) if config.quantizer == "lfq" else int(config.codebook_size)


def build(config: ml_collections.ConfigDict) -> nn.Module:
    if config.quantizer == "vq":
        return VectorQuantizer(
            codebook_size=config.codebook_size, embedding_dim=config.embedding_dim,
            commitment_cost=config.commitment_cost, entropy_loss_ratio=config.entropy_loss_ratio,
            entropy_temperature=config.entropy_temperature, name="quantizer")
    if config.quantizer == "lfq":
        return LookupFreeQuantizer(
            bits=config.lfq_bits, commitment_cost=config.lfq_commitment_cost,
            entropy_weight=config.lfq_entropy_weight,
            entropy_temperature=config.entropy_temperature, name="quantizer")
    raise ValueError(f"tokenizer.model.quantizer must be 'vq' or 'lfq', got {config.quantizer!r}")


def entropy_loss(affinity, temperature: float):
    """Mean per-sample entropy minus the entropy of the mean assignment; affinity [N, K]."""
    logits = affinity / temperature
    probs = jax.nn.softmax(logits, axis=-1)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    sample_entropy = -jnp.mean(jnp.sum(probs * log_probs, axis=-1))
    avg_probs = jnp.mean(probs, axis=0)
    avg_entropy = -jnp.sum(avg_probs * jnp.log(avg_probs + 1e-8))
    return sample_entropy - avg_entropy


def usage_metrics(ids, num_codes: int) -> dict:
    """Perplexity of the code histogram and fraction of codes used, for a flat id array."""
    counts = jnp.bincount(ids.reshape(-1), length=num_codes).astype(jnp.float32)
    probs = counts / jnp.sum(counts)
    perplexity = jnp.exp(-jnp.sum(jnp.where(probs > 0, probs * jnp.log(probs + 1e-12), 0.0)))
    return {"perplexity": perplexity, "codebook_usage": jnp.mean(counts > 0)}


def straight_through(z, quantized):
    """Forward: quantized; backward: identity to z."""
    return z + jax.lax.stop_gradient(quantized - z)


class VectorQuantizer(nn.Module):
    codebook_size: int
    embedding_dim: int
    commitment_cost: float = 0.25
    entropy_loss_ratio: float = 0.1
    entropy_temperature: float = 0.01

    def setup(self):
        self.codebook = self.param(
            "codebook", nn.initializers.variance_scaling(1.0, "fan_in", "uniform"),
            (self.codebook_size, self.embedding_dim))

    def embed(self, ids):
        return jnp.take(self.codebook, ids, axis=0)

    def __call__(self, z):
        if z.shape[-1] != self.embedding_dim:
            raise ValueError(f"latents have {z.shape[-1]} channels, codebook entries "
                             f"{self.embedding_dim}")
        flat = z.reshape(-1, self.embedding_dim)
        codebook = self.codebook
        distances = (jnp.sum(flat ** 2, axis=1, keepdims=True) - 2 * flat @ codebook.T
                     + jnp.sum(codebook ** 2, axis=1)[None, :])
        ids = jnp.argmin(distances, axis=1)
        quantized = jnp.take(codebook, ids, axis=0).reshape(z.shape)
        codebook_loss = jnp.mean(jnp.square(quantized - jax.lax.stop_gradient(z)))
        commitment_loss = jnp.mean(jnp.square(jax.lax.stop_gradient(quantized) - z))
        entropy = entropy_loss(-distances, self.entropy_temperature)
        loss = (codebook_loss + self.commitment_cost * commitment_loss
                + self.entropy_loss_ratio * entropy)
        aux = {"quantizer_loss": loss, "codebook_loss": codebook_loss,
               "commitment_loss": commitment_loss, "entropy_loss": entropy,
               **usage_metrics(ids, self.codebook_size)}
        return straight_through(z, quantized), ids.reshape(z.shape[:-1]).astype(jnp.int32), aux


class LookupFreeQuantizer(nn.Module):
    bits: int
    commitment_cost: float = 0.25
    entropy_weight: float = 0.1
    entropy_temperature: float = 0.01

    def _powers(self):
        return 2 ** jnp.arange(self.bits, dtype=jnp.int32)

    def embed(self, ids):
        bits = (ids[..., None] // self._powers()) % 2
        return bits.astype(jnp.float32) * 2.0 - 1.0

    def __call__(self, z):
        if z.shape[-1] != self.bits:
            raise ValueError(f"LFQ latents have {z.shape[-1]} channels, expected {self.bits} bits")
        quantized = jnp.where(z > 0, 1.0, -1.0).astype(z.dtype)
        ids = jnp.sum((z > 0).astype(jnp.int32) * self._powers(), axis=-1)
        commitment_loss = jnp.mean(jnp.square(z - jax.lax.stop_gradient(quantized)))
        codes = self.embed(jnp.arange(2 ** self.bits))
        entropy = entropy_loss(2.0 * z.reshape(-1, self.bits) @ codes.T, self.entropy_temperature)
        loss = self.commitment_cost * commitment_loss + self.entropy_weight * entropy
        aux = {"quantizer_loss": loss, "commitment_loss": commitment_loss,
               "entropy_loss": entropy, **usage_metrics(ids, 2 ** self.bits)}
        return straight_through(z, quantized), ids, aux
