"""2D -> 3D inflation: initialise the video VQ model from an image VQGAN of the same width.

The image model is `VQModel(config.model, spatial_dims=2)`: the same modules with 2D kernels, so
parameter trees match name for name. A 2D kernel [kh, kw, in, out] becomes a 3D kernel
[kt, kh, kw, in, out]:
  central  the 2D kernel at the central time tap, zeros elsewhere: on a clip of identical frames
           the 3D model computes exactly the 2D model's per-frame output;
  average  the 2D kernel divided by kt at every time tap (same response on static interiors).
Every other parameter (GroupNorm, biases, codebook, 1x1 kernels of the same rank) is copied.
"""
import flax.serialization
import flax.traverse_util
import jax.numpy as jnp
import tensorflow as tf

METHODS = ("central", "average")


def inflate_kernel(kernel2d, time_size: int, method: str = "central"):
    if method not in METHODS:
        raise ValueError(f"inflation method must be one of {METHODS}, got {method!r}")
    kernel2d = jnp.asarray(kernel2d)
    if method == "average":
        return jnp.repeat(kernel2d[None] / time_size, time_size, axis=0)
    kernel = jnp.zeros((time_size, *kernel2d.shape), kernel2d.dtype)
    return kernel.at[time_size // 2].set(kernel2d)


def inflate_params(params_2d, params_3d, method: str = "central"):
    """3D parameters shaped like `params_3d` (a template) with the values of `params_2d`."""
    flat_2d = flax.traverse_util.flatten_dict(params_2d, sep="/")
    flat_3d = flax.traverse_util.flatten_dict(params_3d, sep="/")
    missing = sorted(set(flat_3d) - set(flat_2d))
    if missing:
        raise ValueError(f"the 2D parameters lack {len(missing)} entries of the 3D model, e.g. "
                         f"{missing[:3]}: not the same architecture")
    out = {}
    for name, target in flat_3d.items():
        source = jnp.asarray(flat_2d[name])
        if source.shape == target.shape:
            out[name] = source.astype(target.dtype)
        elif source.ndim == 4 and len(target.shape) == 5 and source.shape == target.shape[1:]:
            out[name] = inflate_kernel(source, target.shape[0], method).astype(target.dtype)
        else:
            raise ValueError(f"cannot inflate {name}: 2D shape {source.shape}, 3D shape "
                             f"{tuple(target.shape)}")
    return flax.traverse_util.unflatten_dict(out, sep="/")


def save_2d_params(params_2d, path: str) -> None:
    """Writes 2D VQGAN parameters as flax msgpack (the `tokenizer.model.init_from_2d` format)."""
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(flax.serialization.msgpack_serialize(flax.serialization.to_state_dict(params_2d)))


def load_2d_params(path: str):
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"tokenizer.model.init_from_2d={path!r}: no such file")
    with tf.io.gfile.GFile(path, "rb") as f:
        return flax.serialization.msgpack_restore(f.read())
