"""The tokenizer's perceptual loss: distance between ImageNet ResNet-50 logits of real and
reconstructed frames (MAGVIT's official configs: `perceptual_loss_on_logit`, weight 0.1).

Every frame of both clips is resized to `resolution` x `resolution` (bilinear, 224 in the paper
configs), preprocessed as Keras' `resnet50.preprocess_input` and classified; the loss is the mean
over frames and classes of the squared logit difference. The network is frozen: its variables are
an input of the step, never trained, never in the optimiser state, and no gradient flows into them
nor through the real clip's branch.

The loss exists only when `tokenizer.loss.perceptual_weights` names a local Keras ResNet-50 weights
file (see `magvit.metrics.resnet50`); otherwise it is off, never replaced by a stand-in.
"""
import jax
import jax.numpy as jnp

from magvit.metrics import resnet50

_NETWORK = resnet50.ResNet50()


def enabled(loss_config) -> bool:
    return bool(loss_config.perceptual_weights)


def load_variables(loss_config):
    """The frozen ResNet-50 variables from `loss_config.perceptual_weights`, or None when off."""
    if not enabled(loss_config):
        return None
    try:
        return resnet50.load_keras_weights(loss_config.perceptual_weights)
    except resnet50.ResNet50WeightsError as e:
        raise resnet50.ResNet50WeightsError(f"tokenizer.loss.perceptual_weights: {e}") from e


def frame_logits(variables, video, resolution: int):
    """[..., H, W, 3] frames in [0, 1] -> ResNet-50 logits [num_frames, 1000]."""
    frames = video.reshape((-1, *video.shape[-3:]))
    if frames.shape[1:3] != (resolution, resolution):
        frames = jax.image.resize(frames, (frames.shape[0], resolution, resolution, 3), "bilinear")
    return _NETWORK.apply(variables, resnet50.preprocess_input(frames))


def perceptual_loss(variables, real, fake, resolution: int = resnet50.IMAGE_SIZE):
    """mean((logits(real) - logits(fake))^2) over frames and classes; gradients reach `fake` only."""
    variables = jax.lax.stop_gradient(variables)
    real_logits = jax.lax.stop_gradient(frame_logits(variables, real, resolution))
    fake_logits = frame_logits(variables, fake, resolution)
    return jnp.mean(jnp.square(real_logits - fake_logits))
