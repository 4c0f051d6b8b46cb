"""ResNet-50 perceptual loss: Keras-file mapping proven against Keras itself, strict loader errors,
loss values, and a tokenizer train step with the loss on (frozen network, wired into the loss)."""
import functools

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magvit import train_utils
from magvit.metrics import resnet50
from magvit.tokenizer import perceptual
from magvit.tokenizer.train_step import Models, jit_train_step, train_step
from tests.test_tokenizer_model import micro_config

SIZE = 32   # the smallest input Keras' ResNet50 accepts; conv5 is then 1x1
# Unoptimised machine code for one-off computations: compiling the tokenizer initialiser with LLVM
# optimisations takes ~20 s of CPU, without ~3 s.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def write_keras2_h5(model, path):
    """The Keras-2 weights layout of resnet50_weights_tf_dim_ordering_tf_kernels.h5: root attribute
    `layer_names`, one group per layer with `weight_names` ('<layer>/kernel:0', ...) naming
    datasets inside the group."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([layer.name.encode() for layer in model.layers])
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            group.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
            for name, value in zip(names, layer.get_weights()):
                group.create_dataset(name, data=value)


@pytest.fixture(scope="module")
def keras_resnet(tmp_path_factory):
    """A Keras ResNet50 with random weights (random BN statistics too), written to HDF5 and read
    back by Keras' own loader; returns (path, RGB frames in [0, 1], the Keras logits of those
    frames after Keras' own resnet50.preprocess_input)."""
    import keras
    model = keras.applications.ResNet50(weights=None, input_shape=(SIZE, SIZE, 3),
                                        classifier_activation=None)
    rng = np.random.RandomState(0)
    weights = []
    for w in model.weights:
        shape, name = tuple(w.shape), w.path
        if name.endswith("moving_variance"):
            weights.append(rng.uniform(0.5, 1.5, shape))
        elif name.endswith("gamma"):
            weights.append(rng.uniform(0.5, 1.0, shape))
        elif name.endswith("kernel"):
            weights.append(rng.normal(0, np.sqrt(1.0 / np.prod(shape[:-1])), shape))
        else:
            weights.append(rng.normal(0, 0.1, shape))
    model.set_weights([w.astype(np.float32) for w in weights])
    path = str(tmp_path_factory.mktemp("resnet") / "resnet50_weights_tf_dim_ordering_tf_kernels.h5")
    write_keras2_h5(model, path)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.load_weights(path)           # Keras reads this layout (legacy HDF5 loader)
    frames = rng.uniform(0, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    keras_input = keras.applications.resnet50.preprocess_input(frames * 255.0)
    return path, frames, np.asarray(model(keras_input, training=False))


def test_flax_resnet50_equals_keras_on_the_same_weights(keras_resnet):
    path, frames, keras_logits = keras_resnet
    variables = resnet50.load_keras_weights(path)
    images = resnet50.preprocess_input(jnp.asarray(frames))
    template = jax.eval_shape(resnet50.ResNet50().init, jax.random.PRNGKey(0), images)
    assert jax.tree.map(lambda t: t.shape, template) == jax.tree.map(np.shape, variables)
    logits = np.asarray(resnet50.ResNet50().apply(variables, images))
    assert logits.shape == (2, 1000) and np.std(keras_logits) > 0.1
    np.testing.assert_allclose(logits, keras_logits, atol=1e-3)     # logits span about +-20
    # Keras' preprocess_input ("caffe"): RGB -> BGR, 0..255, minus the ImageNet BGR mean.
    pixel = resnet50.preprocess_input(jnp.array([1.0, 0.5, 0.0]))
    np.testing.assert_allclose(pixel, [0.0 - 103.939, 127.5 - 116.779, 255.0 - 123.68], rtol=1e-6)


def _edit_copy(source, target, edit):
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for name in src:
            src.copy(name, dst)
        edit(dst)
    return str(target)


def test_loader_names_every_missing_extra_or_misshaped_weight(keras_resnet, tmp_path):
    path = keras_resnet[0]

    def drop_moving_variance(f):
        group = f["conv3_block2_2_bn"]
        del group["conv3_block2_2_bn/moving_variance:0"]
        group.attrs["weight_names"] = np.array([f"conv3_block2_2_bn/{w}:0".encode()
                                                for w in ("gamma", "beta", "moving_mean")])

    def add_layer(f):
        group = f.create_group("head2")
        group.attrs["weight_names"] = np.array([b"head2/kernel:0"])
        group.create_dataset("head2/kernel:0", data=np.zeros((3, 3), np.float32))
        f.attrs["layer_names"] = np.append(f.attrs["layer_names"], np.array([b"head2"]))

    def reshape_bias(f):
        del f["predictions"]["predictions/bias:0"]
        f["predictions"].create_dataset("predictions/bias:0", data=np.zeros(10, np.float32))

    for edit, message in [
            (drop_moving_variance, r"missing weight\(s\): conv3_block2_2_bn/moving_variance$"),
            (add_layer, r"unexpected weight\(s\): head2/kernel$"),
            (reshape_bias, r"weight predictions/bias has shape \[10\], expected \[1000\]")]:
        broken = _edit_copy(path, tmp_path / f"{edit.__name__}.h5", edit)
        with pytest.raises(resnet50.ResNet50WeightsError, match=message) as error:
            resnet50.load_keras_weights(broken)
        assert broken in str(error.value)

    with pytest.raises(resnet50.ResNet50WeightsError, match="no such file"):
        resnet50.load_keras_weights(str(tmp_path / "absent.h5"))
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(resnet50.ResNet50WeightsError, match="not an HDF5 file"):
        resnet50.load_keras_weights(str(tmp_path / "text.h5"))
    with h5py.File(tmp_path / "keras3.weights.h5", "w") as f:
        f.create_group("layers")
    with pytest.raises(resnet50.ResNet50WeightsError, match="Keras 3 `.weights.h5`"):
        resnet50.load_keras_weights(str(tmp_path / "keras3.weights.h5"))

    # The tokenizer reads the file only when training starts, and names the config field.
    config = micro_config()
    config.loss.perceptual_weights = str(tmp_path / "absent.h5")
    models = Models(config)
    with pytest.raises(resnet50.ResNet50WeightsError,
                       match=r"tokenizer.loss.perceptual_weights: ResNet-50 weights .*absent.h5"):
        models.perceptual_variables


def test_perceptual_loss_values_and_gradients(keras_resnet):
    variables = resnet50.load_keras_weights(keras_resnet[0])
    rng = np.random.RandomState(1)
    real = jnp.asarray(rng.uniform(0, 1, (1, 2, 16, 16, 3)), jnp.float32)
    fake = jnp.clip(real + 0.1 * jnp.asarray(rng.normal(size=real.shape), jnp.float32), 0, 1)

    # One unoptimised compilation is faster than running the networks op by op.
    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def evaluate(variables, real, fake):
        same = perceptual.perceptual_loss(variables, real, real, SIZE)
        loss, grads = jax.value_and_grad(perceptual.perceptual_loss, argnums=(0, 1, 2))(
            variables, real, fake, SIZE)
        frames = jax.image.resize(jnp.concatenate([real[0], fake[0]]), (4, SIZE, SIZE, 3),
                                  "bilinear")
        return same, loss, grads, resnet50.ResNet50().apply(
            variables, resnet50.preprocess_input(frames))

    same, loss, (g_vars, g_real, g_fake), logits = evaluate(variables, real, fake)
    assert float(same) == 0.0 and float(loss) > 0
    # Definition: per frame (resized bilinearly), mean squared logit difference.
    assert float(loss) == pytest.approx(float(jnp.mean(jnp.square(logits[:2] - logits[2:]))),
                                        rel=1e-4)
    # Gradients reach the reconstruction only: none into the frozen network or the real clip.
    assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(g_vars))
    assert not np.any(np.asarray(g_real)) and np.any(np.asarray(g_fake))


def test_train_step_with_perceptual_loss_keeps_the_network_frozen(keras_resnet):
    path = keras_resnet[0]
    config = micro_config()
    config.loss.perceptual_weights, config.loss.perceptual_resolution = path, SIZE
    config.loss.perceptual_weight = 0.5
    models = Models(config)
    mesh = train_utils.make_mesh(jax.devices()[:1])
    frames = np.random.RandomState(0).randint(0, 256, (2, 4, 16, 16, 3)).astype(np.uint8)
    batch = train_utils.shard_batch({"frames": frames}, mesh)
    init = jax.jit(models.init, compiler_options=FAST_COMPILE)
    state = train_utils.replicate(init(jax.random.PRNGKey(0)), mesh)
    step = jit_train_step(models, mesh, gan=False)
    state, first = step(state, batch)
    state, metrics = step(state, batch)
    assert int(state.step) == 2

    perc = float(first["perceptual_loss"])
    assert perc > 0 and np.isfinite(float(metrics["perceptual_loss"]))
    # Wired into the generator loss with its weight.
    assert float(first["generator_loss"]) == pytest.approx(
        config.loss.reconstruction_weight * float(first["reconstruction_loss"])
        + float(first["quantizer_loss"]) + 0.5 * perc, rel=1e-5)
    # The network is not trained: the state (parameters, optimiser state) is the one of the same
    # tokenizer without the perceptual loss, and the network's variables are unchanged.
    off = micro_config()
    off_state = jax.eval_shape(Models(off).init, jax.random.PRNGKey(0))
    assert jax.tree.structure(state) == jax.tree.structure(off_state)
    assert train_utils.param_count(state) == train_utils.param_count(off_state)
    reloaded = resnet50.load_keras_weights(path)
    for a, b in zip(jax.tree.leaves(models.perceptual_variables), jax.tree.leaves(reloaded)):
        np.testing.assert_array_equal(np.asarray(a), b)
    # Off: no perceptual metric at all (never a stand-in value).
    off_metrics = jax.eval_shape(lambda s, b: train_step(Models(off), s, b, gan=False),
                                 off_state, {"frames": frames})[1]
    assert "perceptual_loss" not in off_metrics and "reconstruction_loss" in off_metrics
    with pytest.raises(ValueError, match="no perceptual_variables"):
        train_step(models, state, {"frames": frames}, gan=False)
