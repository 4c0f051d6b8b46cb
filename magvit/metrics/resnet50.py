"""ResNet-50 (He et al. 2016, v1 as in Keras) in Flax, and its ImageNet weights from a Keras file.

Layer for layer `tf.keras.applications.ResNet50`: 7x7/2 conv + BN + ReLU, zero-padded 3x3/2
max-pool, four stacks of bottleneck blocks (3, 4, 6, 3 blocks of 64, 128, 256, 512 filters; the
stride sits in the first 1x1 conv of a stack's first block, which also has a 1x1 projection
shortcut `_0_conv`), global average pool, 1000-way dense layer. Convs have biases; batch norms use
epsilon 1.001e-5 and their moving statistics. Flax module names are the Keras layer names.

Inputs are Keras' `resnet50.preprocess_input` ("caffe") images: BGR, 0-255 minus the ImageNet mean
(`preprocess_input` here does it from RGB frames in [0, 1]). The output is the logits (the Keras
model's pre-softmax values).

Weights are read from a LOCAL Keras-2-format HDF5 file, never downloaded:
`resnet50_weights_tf_dim_ordering_tf_kernels.h5` (98 MB, md5 2cb95161c43110f7111970584f804107), the
file `tf.keras.applications.ResNet50(weights="imagenet")` fetches into ~/.keras/models/. Its
layout: root attribute `layer_names`; one group per layer with attribute `weight_names`
(`<layer>/kernel:0`, ...), each naming a dataset inside the group. The mapping below is explicit
and complete: a missing, extra or mis-shaped weight is an error naming it.
"""
from __future__ import annotations

import io

import flax.linen as nn
import h5py
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from magvit.metrics import weight_mapping

NUM_CLASSES = 1000
IMAGE_SIZE = 224
BN_EPSILON = 1.001e-5
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# (stack name, filters, blocks, stride of the first block)
STACKS = (("conv2", 64, 3, 1), ("conv3", 128, 4, 2), ("conv4", 256, 6, 2), ("conv5", 512, 3, 2))

# Keras weight name -> (Flax collection, Flax name), per layer kind, in the file's order.
_CONV = {"kernel": ("params", "kernel"), "bias": ("params", "bias")}
_BATCH_NORM = {"gamma": ("params", "scale"), "beta": ("params", "bias"),
               "moving_mean": ("batch_stats", "mean"), "moving_variance": ("batch_stats", "var")}
_DENSE = _CONV


class ResNet50WeightsError(ValueError):
    """A weights file that cannot be used: wrong path or format, missing/extra/mis-shaped weights."""


def keras_layers(num_classes: int = NUM_CLASSES) -> dict[str, tuple[dict, dict[str, tuple]]]:
    """Every Keras layer with weights: name -> (Keras->Flax name map, {Keras weight: shape})."""
    layers = {}

    def conv(name, kernel, cin, cout):
        layers[f"{name}_conv"] = (_CONV, {"kernel": (kernel, kernel, cin, cout), "bias": (cout,)})
        layers[f"{name}_bn"] = (_BATCH_NORM, {key: (cout,) for key in _BATCH_NORM})

    conv("conv1", 7, 3, 64)
    channels = 64
    for stack, filters, blocks, _ in STACKS:
        for i in range(1, blocks + 1):
            block = f"{stack}_block{i}"
            if i == 1:
                conv(f"{block}_0", 1, channels, 4 * filters)
            conv(f"{block}_1", 1, channels, filters)
            conv(f"{block}_2", 3, filters, filters)
            conv(f"{block}_3", 1, filters, 4 * filters)
            channels = 4 * filters
    layers["predictions"] = (_DENSE, {"kernel": (channels, num_classes), "bias": (num_classes,)})
    return layers


def preprocess_input(frames):
    """RGB frames in [0, 1] [..., 3] -> Keras 'caffe' input: BGR, 0-255, minus the ImageNet mean."""
    return frames[..., ::-1] * 255.0 - jnp.asarray(CAFFE_MEAN_BGR, frames.dtype)


class ResNet50(nn.Module):
    """Preprocessed images [N, H, W, 3] (H, W >= 32) -> logits [N, num_classes]."""
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x):
        def conv_bn(x, name, filters, kernel, stride=1, padding="VALID", relu=True):
            x = nn.Conv(filters, (kernel, kernel), (stride, stride), padding=padding,
                        name=f"{name}_conv")(x)
            x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
            return nn.relu(x) if relu else x

        x = conv_bn(x, "conv1", 64, 7, stride=2, padding=((3, 3), (3, 3)))
        # Keras pads with zeros before the pool; after the ReLU that equals padding with -inf.
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")
        for stack, filters, blocks, stride in STACKS:
            for i in range(1, blocks + 1):
                block, s = f"{stack}_block{i}", stride if i == 1 else 1
                shortcut = (conv_bn(x, f"{block}_0", 4 * filters, 1, s, relu=False) if i == 1
                            else x)
                y = conv_bn(x, f"{block}_1", filters, 1, s)
                y = conv_bn(y, f"{block}_2", filters, 3, padding=((1, 1), (1, 1)))
                y = conv_bn(y, f"{block}_3", 4 * filters, 1, relu=False)
                x = nn.relu(shortcut + y)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="predictions")(x)


def _weights_group(f: h5py.File, path: str) -> h5py.Group:
    """The group holding `layer_names`: the file root, or `model_weights` of a whole-model file."""
    group = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in group.attrs:
        hint = (" (this looks like a Keras 3 `.weights.h5` file; give the Keras-2-format "
                "resnet50_weights_tf_dim_ordering_tf_kernels.h5)" if "layers" in f else "")
        raise ResNet50WeightsError(
            f"ResNet-50 weights {path!r}: not a Keras-2-format HDF5 weights file (no "
            f"'layer_names' attribute){hint}")
    return group


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_keras_h5(path: str) -> dict[str, np.ndarray]:
    """Every weight of a Keras-2-format HDF5 file: {'<layer>/<weight>': array}, ':0' dropped."""
    if not path or tf.io.gfile.isdir(path) or not tf.io.gfile.exists(path):
        raise ResNet50WeightsError(f"ResNet-50 weights {path!r}: no such file")
    with tf.io.gfile.GFile(path, "rb") as stored:  # local or remote (gs://)
        content = io.BytesIO(stored.read())
    try:
        f = h5py.File(content, "r")
    except OSError as e:
        raise ResNet50WeightsError(f"ResNet-50 weights {path!r}: not an HDF5 file ({e})") from e
    weights = {}
    with f:
        group = _weights_group(f, path)
        for layer in map(_text, group.attrs["layer_names"]):
            layer_group = group[layer]
            for weight_name in map(_text, layer_group.attrs.get("weight_names", [])):
                key = f"{layer}/{weight_name.rsplit('/', 1)[-1].split(':')[0]}"
                weights[key] = np.asarray(layer_group[weight_name], np.float32)
    return weights


def load_keras_weights(path: str, num_classes: int = NUM_CLASSES) -> dict:
    """Flax variables {'params', 'batch_stats'} of `ResNet50` from the Keras HDF5 file at `path`.

    Raises ResNet50WeightsError naming the file and every missing, extra or mis-shaped weight.
    """
    stored = read_keras_h5(path)
    layers = keras_layers(num_classes)
    expected = {f"{layer}/{weight}": shape
                for layer, (_, shapes) in layers.items() for weight, shape in shapes.items()}
    problems = weight_mapping.mapping_problems(
        expected, {key: value.shape for key, value in stored.items()}, "weight")
    if "fc1000/kernel" in stored:
        problems.insert(0, "this is the 2017 keras-applications v0.2 file (layer names "
                        "res2a_branch2a, fc1000; other batch-norm epsilon); use the one "
                        "tf.keras.applications.ResNet50 loads (md5 2cb95161c43110f7111970584f804107)")
    if problems:
        raise ResNet50WeightsError(f"ResNet-50 weights {path!r}: " + "; ".join(problems))
    variables = {"params": {}, "batch_stats": {}}
    for layer, (name_map, shapes) in layers.items():
        for weight in shapes:
            collection, flax_name = name_map[weight]
            variables[collection].setdefault(layer, {})[flax_name] = stored[f"{layer}/{weight}"]
    return variables
