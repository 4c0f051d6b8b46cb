"""Compute dtypes and rematerialisation switches of the models (config as data).

`config.tokenizer.dtype` / `config.transformer.dtype` name the dtype that convolutions, dense
layers and attention compute in: "float32" (the default, what the official code runs on CPU) or
"bfloat16" (what it runs on TPU / GPU). Parameters and optimiser state stay float32 (flax's
`param_dtype`), normalisations, the quantizer, the losses and the output logits are float32.
`config.*.remat` recomputes each encoder / decoder residual block or transformer layer in the
backward pass instead of storing its activations (jax.checkpoint), trading ~1/3 more compute for
memory, so that the paper's batch sizes fit on one accelerator host.
"""
import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str, flag: str = "dtype"):
    """The jnp dtype named by a config string; a clear error naming the flag otherwise."""
    if name not in DTYPES:
        raise ValueError(f"--config.{flag}={name!r}: expected one of {', '.join(DTYPES)}")
    return DTYPES[name]


def model_options(section, flag: str) -> dict:
    """{"dtype": jnp dtype, "remat": bool} of a `tokenizer` / `transformer` config section.

    Sections written before these fields existed (older config.json files) mean float32 without
    rematerialisation.
    """
    return {"dtype": compute_dtype(section.get("dtype", "float32"), f"{flag}.dtype"),
            "remat": bool(section.get("remat", False))}
