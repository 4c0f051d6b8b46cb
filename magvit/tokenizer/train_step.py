"""The tokenizer's training state and pure, jit-able steps: (state, batch) -> (state, metrics).

One step updates the generator (VQ autoencoder: weighted L2 reconstruction + quantizer losses,
+ the frozen ResNet-50 perceptual loss when `loss.perceptual_weights` is set, + the non-saturating
adversarial loss once the GAN is on), its EMA, and, with the GAN on, the discriminator
(non-saturating loss + R1 penalty on real clips + LeCam regularisation) and the LeCam EMAs.
The GAN on/off choice is a static argument: two compiled steps, the Python loop picks one by
`loss.gan_start_step`.

With `model.spatial_dims=2` the same step trains the 2D image VQGAN of the official
image-to-video initialisation (`vqgan2d_*` configs): each clip of the batch gives
`training.frames_per_clip` random frames, the generator and the discriminator run on images, and
`magvit.tokenizer.inflation.init_from_2d` later inflates all three parameter sets (generator, EMA,
discriminator) into the 3D model.
"""
import functools

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from magvit import precision, train_utils, xla_cpu
from magvit.tokenizer import discriminator as discriminator_lib
from magvit.tokenizer import losses, perceptual
from magvit.tokenizer.model import VQModel


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray
    params: dict
    ema_params: dict
    opt_state: optax.OptState
    disc_params: dict
    disc_opt_state: optax.OptState
    lecam: dict            # EMAs of the discriminator's mean real / fake logits
    rng: jnp.ndarray       # raw uint32 key data (random flips)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam(b1, b2) (decoupled weight decay when set) on the warm-up + cosine schedule."""
    o = config.optimizer
    schedule = train_utils.learning_rate_schedule(o.learning_rate, o.warmup_steps,
                                                  config.training.num_train_steps)
    return optax.adamw(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay)


class Models:
    """The flax modules and optimiser of one tokenizer config."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.spatial_dims = spatial_dims(config)
        self.generator = VQModel(config.model, self.spatial_dims,
                                 **precision.model_options(config, "tokenizer"))
        self.discriminator = discriminator_lib.build(config.discriminator)
        self.optimizer = make_optimizer(config)

    def init(self, rng) -> TrainState:
        shape = tuple(self.config.clip_shape)[-self.spatial_dims:]
        clip = jnp.zeros((1, *shape, 3), jnp.float32)

        def build(rng):
            g_rng, d_rng, state_rng = jax.random.split(rng, 3)
            params = self.generator.init(g_rng, clip)["params"]
            disc_params = self.discriminator.init(d_rng, clip)["params"]
            return TrainState(
                step=jnp.zeros((), jnp.int32), params=params,
                ema_params=params,   # an output of its own: its own buffers (the step donates)
                opt_state=self.optimizer.init(params), disc_params=disc_params,
                disc_opt_state=self.optimizer.init(disc_params),
                lecam={"real": jnp.zeros((), jnp.float32), "fake": jnp.zeros((), jnp.float32)},
                rng=state_rng)
        return train_utils.run_once(build, rng)

    @functools.cached_property
    def perceptual_variables(self):
        """The frozen ResNet-50 of the perceptual loss (host arrays), read on first use, so that
        loading a trained tokenizer never needs the file; None when the loss is off."""
        return perceptual.load_variables(self.config.loss)


def spatial_dims(config: ml_collections.ConfigDict) -> int:
    """3 (video tokenizer) or 2 (image tokenizer) from `model.spatial_dims`."""
    dims = int(config.model.get("spatial_dims", 3))
    if dims not in (2, 3):
        raise ValueError(f"tokenizer.model.spatial_dims={dims}: expected 3 (video) or 2 (image)")
    return dims


def sample_frames(rng, clips, frames_per_clip: int):
    """[B, T, H, W, C] clips -> [B * k, H, W, C]: k frames of each clip drawn without
    replacement (the 2D tokenizer's images)."""
    batch, length = clips.shape[:2]
    if not 1 <= frames_per_clip <= length:
        raise ValueError(f"tokenizer.training.frames_per_clip={frames_per_clip}: must be in "
                         f"[1, {length}] (the clip's frames)")
    keys = jax.random.split(rng, batch)
    picks = jax.vmap(lambda k: jax.random.permutation(k, length)[:frames_per_clip])(keys)
    images = jnp.take_along_axis(clips, picks[:, :, None, None, None], axis=1)
    return images.reshape(batch * frames_per_clip, *clips.shape[2:])


def to_unit(frames):
    """uint8 [0, 255] -> float32 [0, 1] (the pixel range of the official configs)."""
    return frames.astype(jnp.float32) / 255.0


def random_flip(rng, x):
    """Flips each clip left-right with probability 1/2."""
    flip = jax.random.bernoulli(rng, 0.5, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(flip, x[..., ::-1, :], x)


def train_step(models: Models, state: TrainState, batch: dict, perceptual_variables=None, *,
               gan: bool):
    """One generator (+ discriminator when `gan`) update; returns (state, scalar metrics).

    `perceptual_variables`: `models.perceptual_variables` when the perceptual loss is on (an
    argument, not a constant baked into the compiled step); ignored when it is off.
    """
    config = models.config
    loss_cfg = config.loss
    use_perceptual = perceptual.enabled(loss_cfg)
    if use_perceptual and perceptual_variables is None:
        raise ValueError(f"tokenizer.loss.perceptual_weights={loss_cfg.perceptual_weights!r} is "
                         "set but train_step got no perceptual_variables: pass "
                         "models.perceptual_variables")
    rng, flip_rng, frame_rng = jax.random.split(state.rng, 3)
    x = to_unit(batch["frames"])
    if models.spatial_dims == 2:
        x = sample_frames(frame_rng, x, int(config.training.get("frames_per_clip", 1)))
    if config.training.random_flip:
        x = random_flip(flip_rng, x)

    def discriminate(disc_params, video):
        return models.discriminator.apply({"params": disc_params}, video)

    def generator_loss(params):
        recon, _, aux = models.generator.apply({"params": params}, x)
        rec = losses.reconstruction_loss(x, recon)
        loss = loss_cfg.reconstruction_weight * rec + aux["quantizer_loss"]
        metrics = {"reconstruction_loss": rec, **aux}
        if use_perceptual:
            as_video = (lambda v: v[:, None]) if models.spatial_dims == 2 else (lambda v: v)
            perc = perceptual.perceptual_loss(perceptual_variables, as_video(x), as_video(recon),
                                              loss_cfg.perceptual_resolution)
            loss = loss + loss_cfg.perceptual_weight * perc
            metrics["perceptual_loss"] = perc
        if gan:
            g_adv = losses.generator_adversarial_loss(discriminate(state.disc_params, recon))
            loss = loss + loss_cfg.generator_adversarial_weight * g_adv
            metrics["generator_adversarial_loss"] = g_adv
        return loss, (recon, metrics)

    (g_loss, (recon, metrics)), grads = jax.value_and_grad(generator_loss, has_aux=True)(
        state.params)
    updates, opt_state = models.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = train_utils.ema_update(state.ema_params, params, config.optimizer.ema_decay)
    metrics.update(generator_loss=g_loss, generator_grad_norm=optax.global_norm(grads),
                   psnr=jnp.mean(10 * jnp.log10(1.0 / jnp.maximum(
                       jnp.mean(jnp.square(x - jnp.clip(recon, 0, 1)),
                                axis=tuple(range(1, x.ndim))),
                       1e-10))))
    state = state.replace(step=state.step + 1, params=params, ema_params=ema_params,
                          opt_state=opt_state, rng=rng)
    if gan:
        state, disc_metrics = _discriminator_update(models, state, x, recon, discriminate)
        metrics.update(disc_metrics)
    return state, metrics


def _discriminator_update(models, state, real, recon, discriminate):
    loss_cfg = models.config.loss
    fake = jax.lax.stop_gradient(recon)

    def disc_loss(disc_params):
        r1, real_logits = losses.r1_penalty(functools.partial(discriminate, disc_params), real,
                                            loss_cfg.r1_gamma,
                                            loss_cfg.get("r1_convention", "official"))
        fake_logits = discriminate(disc_params, fake)
        adv = losses.discriminator_loss(real_logits, fake_logits)
        lecam = losses.lecam_regularization(real_logits, fake_logits, state.lecam["real"],
                                            state.lecam["fake"],
                                            loss_cfg.get("lecam_mode", "batch_mean"))
        loss = loss_cfg.discriminator_adversarial_weight * adv + r1 + loss_cfg.lecam_weight * lecam
        return loss, (real_logits, fake_logits, {"discriminator_adversarial_loss": adv,
                                                 "r1_penalty": r1, "lecam_loss": lecam})

    (loss, (real_logits, fake_logits, metrics)), grads = jax.value_and_grad(
        disc_loss, has_aux=True)(state.disc_params)
    updates, disc_opt_state = models.optimizer.update(grads, state.disc_opt_state,
                                                      state.disc_params)
    lecam = losses.lecam_ema_update(state.lecam, real_logits, fake_logits,
                                    loss_cfg.lecam_ema_decay)
    metrics.update(discriminator_loss=loss, logits_real=jnp.mean(real_logits),
                   logits_fake=jnp.mean(fake_logits))
    return state.replace(disc_params=optax.apply_updates(state.disc_params, updates),
                         disc_opt_state=disc_opt_state, lecam=lecam), metrics


def reconstruct(models: Models, params, frames):
    """uint8 clips -> (uint8 reconstructions, token ids) with the given (EMA) parameters; a 2D
    tokenizer reconstructs every frame of the clips as an image."""
    x = to_unit(frames)
    if models.spatial_dims == 2:
        recon, ids, _ = models.generator.apply({"params": params},
                                               x.reshape(-1, *x.shape[2:]))
        return (jnp.round(jnp.clip(recon, 0.0, 1.0) * 255.0).astype(jnp.uint8).reshape(
            frames.shape), ids.reshape(*frames.shape[:2], *ids.shape[1:]))
    recon, ids, _ = models.generator.apply({"params": params}, x)
    return jnp.round(jnp.clip(recon, 0.0, 1.0) * 255.0).astype(jnp.uint8), ids


def jit_train_step(models: Models, mesh, gan: bool):
    """The step (state, batch) -> (state, metrics) compiled for `mesh`: state replicated, batch
    split over the data axis; the frozen perceptual network, when on, replicated once."""
    replicated = train_utils.replicated(mesh)
    step = xla_cpu.jit_step(functools.partial(train_step, models, gan=gan),
                            out_shardings=(replicated, replicated), donate_argnums=0)
    if models.perceptual_variables is None:
        return step
    frozen = train_utils.replicate(models.perceptual_variables, mesh)
    return lambda state, batch: step(state, batch, frozen)
