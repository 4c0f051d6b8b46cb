"""2D -> 3D inflation: initialise the video VQ model from an image VQGAN of the same width.

The image model is `VQModel(config.model, spatial_dims=2)`: the same modules with 2D kernels, so
parameter trees match name for name. A 2D kernel [kh, kw, in, out] becomes a 3D kernel
[kt, kh, kw, in, out]:
  central  the 2D kernel at the central time tap, zeros elsewhere: on a clip of identical frames
           the 3D model computes exactly the 2D model's per-frame output;
  average  the 2D kernel divided by kt at every time tap (same response on static interiors).
Every other parameter (GroupNorm, biases, codebook, 1x1 kernels of the same rank) is copied.

`tokenizer.model.init_from_2d` names either a 2D tokenizer work directory (trained by
`magvit.train_tokenizer` with `model.spatial_dims=2`, e.g. `--config=ucf101_b_image`): then, as
the official `vqgan_train_lib.init_from_pretrained_checkpoint`, the generator, its EMA and the
discriminator are all inflated (optimiser states, LeCam EMAs and the step start afresh); or a
msgpack file of 2D generator parameters (`save_2d_params`): then only the generator is inflated,
its EMA starts equal to it and the discriminator starts random.
"""
import flax.serialization
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
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


def load_2d_state(workdir: str):
    """(params, ema_params, disc_params) of the latest checkpoint of a 2D tokenizer workdir."""
    from magvit import checkpoints, train_utils
    from magvit.tokenizer.train_step import Models
    config = checkpoints.load_config(workdir).tokenizer
    if int(config.model.get("spatial_dims", 3)) != 2:
        raise ValueError(f"tokenizer.model.init_from_2d={workdir!r}: a 3D tokenizer, not a 2D one "
                         "(train one with --config.tokenizer.model.spatial_dims=2)")
    models = Models(config)
    checkpointer = checkpoints.Checkpointer(workdir)
    if checkpointer.latest_step() is None:
        raise FileNotFoundError(f"tokenizer.model.init_from_2d={workdir!r}: no checkpoint under "
                                f"{checkpointer.directory}")
    template = jax.eval_shape(models.init, jax.random.PRNGKey(0))
    state, _ = checkpointer.restore(template, default_sharding=train_utils.replicated(
        train_utils.make_mesh()))
    checkpointer.close()
    return jax.device_get((state.params, state.ema_params, state.disc_params))


def init_from_2d(path: str, state, method: str = "central"):
    """`state` (a fresh 3D TrainState) with its generator, EMA and discriminator inflated from the
    2D tokenizer at `path` (a work directory), or its generator and EMA from a msgpack file."""
    from magvit import checkpoints
    if tf.io.gfile.exists(checkpoints.checkpoint_dir(path)):
        params, ema, disc = load_2d_state(path)
        return state.replace(params=inflate_params(params, state.params, method),
                             ema_params=inflate_params(ema, state.ema_params, method),
                             disc_params=inflate_params(disc, state.disc_params, method))
    params = inflate_params(load_2d_params(path), state.params, method)
    return state.replace(params=params, ema_params=jax.tree.map(np.array, params))
