"""The transformer's train state, optimiser and COMMIT training step (a pure, jitted function).

A batch (numpy, built on the host by `magvit.train_transformer`) holds, per example:
  tokens      int32 [B, N]  the clip's tokens (flattened t*h*w)
  cond_tokens int32 [B, N]  the tokens of its task's condition video
  cond_mask   bool  [B, N]  the interior condition tokens of its task
  prefix      int32 [B, P]  [task token (multi-task models),] class token
The step samples one mask ratio for the whole batch (official; `mask_ratio_sampling=
"per_example"` draws one per example) through the mask schedule, builds the COMMIT input, and
minimises the weighted, label-smoothed cross-entropy over the codebook: per example the weighted
mean over its positions, then the mean over the batch (official `maskgvt_trainer.train_step`).
"""
import flax
import jax
import jax.numpy as jnp
import optax

from magvit import xla_cpu
from magvit.train_utils import learning_rate_schedule, run_once
from magvit.transformer import masking


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray
    params: dict
    opt_state: optax.OptState
    rng: jnp.ndarray


def make_optimizer(optimizer_config, total_steps: int) -> optax.GradientTransformation:
    """AdamW (decay on kernels only, as the official code), warm-up + cosine lr, clipping."""
    lr = learning_rate_schedule(optimizer_config.learning_rate, optimizer_config.warmup_steps,
                                total_steps)

    def decay_mask(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: getattr(path[-1], "key", None) == "kernel", params)
    return optax.chain(
        optax.clip_by_global_norm(optimizer_config.grad_clip_norm),
        optax.adamw(lr, b1=optimizer_config.b1, b2=optimizer_config.b2,
                    weight_decay=optimizer_config.weight_decay, mask=decay_mask))


def init_state(model, optimizer, rng, sequence_length: int) -> TrainState:
    def build(rng):
        init_rng, rng = jax.random.split(rng)
        params = model.init(init_rng, jnp.zeros((1, sequence_length), jnp.int32))["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=optimizer.init(params), rng=rng)
    return run_once(build, rng)   # one program, as the tokenizer's Models.init


MASK_RATIO_SAMPLING = ("per_batch", "per_example")


def mask_ratios(rng, batch: int, num_tokens: int, method: str = "cosine",
                sampling: str = "per_batch"):
    """float32 [batch] mask ratios: schedule(u), u ~ U[0, 1), one u for the whole batch
    (official `generate_mask_ratio`) or one per example."""
    if sampling not in MASK_RATIO_SAMPLING:
        raise ValueError(f"transformer.mask_ratio_sampling={sampling!r}: expected one of "
                         f"{', '.join(MASK_RATIO_SAMPLING)}")
    draws = 1 if sampling == "per_batch" else batch
    ratio = masking.schedule(jax.random.uniform(rng, (draws,)), method, num_tokens)
    return jnp.broadcast_to(ratio, (batch,))


def token_losses(logits, targets, smoothing: float):
    """float [..., K] logits, int [...] targets -> per token (label-smoothed cross-entropy, plain
    cross-entropy, target is the top logit), all from one log-softmax and without a one-hot:
    smoothing s gives the target 1 - s + s/K and every code s/K (optax.smooth_labels), so the
    smoothed loss is -(1 - s) log p_target - s mean_k log p_k."""
    logp = jax.nn.log_softmax(logits)
    is_target = jnp.arange(logits.shape[-1]) == targets[..., None]
    target = jnp.sum(jnp.where(is_target, logp, 0.0), axis=-1)
    smoothed = -(1.0 - smoothing) * target - smoothing * jnp.mean(logp, axis=-1)
    return smoothed, -target, target >= jnp.max(logp, axis=-1)


def make_train_step(model, optimizer, transformer_config, codebook_size: int, mask_id: int):
    """Returns a jitted (state, batch) -> (state, metrics)."""
    weights = masking.loss_weights(transformer_config)
    smoothing = float(transformer_config.label_smoothing)
    method = transformer_config.mask_schedule
    sampling = transformer_config.get("mask_ratio_sampling", "per_batch")
    mask_ratios(jax.random.PRNGKey(0), 1, 1, method, sampling)     # checks the options now

    def loss_fn(params, batch, rng):
        ratio_rng, mask_rng, dropout_rng = jax.random.split(rng, 3)
        tokens, prefix = batch["tokens"], batch["prefix"]
        ratio = mask_ratios(ratio_rng, tokens.shape[0], tokens.shape[1], method, sampling)
        commit = masking.commit_inputs(mask_rng, tokens, batch["cond_tokens"], batch["cond_mask"],
                                       ratio, mask_id, weights)
        inputs = jnp.concatenate([prefix, commit["inputs"]], axis=1)
        segments = jnp.concatenate([jnp.zeros_like(prefix), commit["segment_ids"]], axis=1)
        logits = model.apply({"params": params}, inputs, segments, deterministic=False,
                             rngs={"dropout": dropout_rng}, logits_from=prefix.shape[1],
                             num_logits=codebook_size)
        ce, plain, correct = token_losses(logits, commit["targets"], smoothing)
        w = commit["weights"]
        loss = jnp.mean(jnp.sum(ce * w, axis=-1) / (jnp.sum(w, axis=-1) + 1e-8))
        # The masked-token loss (plain cross-entropy at [MASK] inputs), comparable to log(K).
        at_mask = commit["masked"] & ~batch["cond_mask"]
        count = jnp.maximum(jnp.sum(at_mask), 1)
        metrics = dict(loss=loss, masked_loss=jnp.sum(plain * at_mask) / count,
                       masked_accuracy=jnp.sum(correct * at_mask) / count,
                       mask_ratio=jnp.mean(ratio))
        return loss, metrics

    @xla_cpu.jit_step
    def train_step(state: TrainState, batch: dict):
        rng, step_rng = jax.random.split(state.rng)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, batch, step_rng)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics["grad_norm"] = optax.global_norm(grads)
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state, rng=rng), metrics

    return train_step
