"""Seconds per generated clip: 12-step MAGVIT decoding vs the autoregressive (KV-cache) baseline
over the same token grid and the same model size, in one run; and training tokens/s.

  python bench/bench_transformer.py --config=tiny --grid=4,16,16 [--batch=1] [--repeats=3]
  python bench/bench_transformer.py --config=bair_b --grid=4,16,16      # paper size (needs a GPU)

Weights are random: only speed is measured. Both decoders are jitted and warmed up first.
"""
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from magvit.configs.flags import define_config_flag, normalize_argv
from magvit.transformer import autoregressive, decoding, tasks
from magvit.transformer.model import build_model
from magvit.transformer.train_step import init_state, make_optimizer, make_train_step

_CONFIG = define_config_flag()
flags.DEFINE_list("grid", ["4", "16", "16"], "Token grid t,h,w (1024 tokens as in the paper).")
flags.DEFINE_integer("batch", 1, "Clips generated at once.")
flags.DEFINE_integer("repeats", 3, "Timed runs per decoder (after one warm-up).")
flags.DEFINE_integer("train_steps", 5, "Timed training steps (after one warm-up).")
FLAGS = flags.FLAGS


def _time(fn, repeats):
    jax.block_until_ready(fn(0))                      # compile + warm-up
    start = time.perf_counter()
    for i in range(repeats):
        jax.block_until_ready(fn(i + 1))
    return (time.perf_counter() - start) / repeats


def main(argv):
    del argv
    config = _CONFIG.value
    tc = config.transformer
    grid = tuple(int(g) for g in FLAGS.grid)
    n = int(np.prod(grid))
    vocab = tasks.Vocabulary(config.tokenizer.model.codebook_size, config.dataset.num_classes,
                             tuple(tc.tasks))
    length = vocab.prefix_length + n
    batch = FLAGS.batch
    prefix = jnp.asarray(vocab.prefix(tasks.task_from_config(tc.tasks[0], tc),
                                      np.zeros(batch, int)))
    bidirectional = build_model(tc, vocab.size, length)
    causal = build_model(tc, vocab.size, length, causal=True)
    params = bidirectional.init(jax.random.PRNGKey(0), jnp.zeros((1, length), jnp.int32))["params"]
    m = tc.model
    print(f"device={jax.devices()[0].device_kind} model: {m.num_layers} layers, hidden "
          f"{m.hidden_size}, mlp {m.mlp_dim}, heads {m.num_heads}; "
          f"{sum(x.size for x in jax.tree.leaves(params)) / 1e6:.2f}M params; "
          f"grid {grid} = {n} tokens; batch {batch}")

    none = jnp.zeros((batch, n), bool)

    @jax.jit
    def magvit(rng):
        fn = decoding.model_logits_fn(bidirectional, params, prefix, vocab.codebook_size)
        return decoding.decode(fn, rng, jnp.zeros((batch, n), jnp.int32), none,
                               mask_id=vocab.mask_id, num_steps=tc.decoding.num_steps,
                               choice_temperature=tc.decoding.choice_temperature)

    def ar(rng):
        return autoregressive.sample(causal, params, prefix, rng, num_tokens=n,
                                     codebook_size=vocab.codebook_size)

    t_magvit = _time(lambda i: magvit(jax.random.PRNGKey(i)), FLAGS.repeats)
    t_ar = _time(lambda i: ar(jax.random.PRNGKey(i)), max(1, FLAGS.repeats // 3))
    print(f"magvit_{tc.decoding.num_steps}_step_s_per_clip={t_magvit / batch:.4f}")
    print(f"autoregressive_{n}_step_s_per_clip={t_ar / batch:.4f}")
    print(f"speedup={t_ar / t_magvit:.1f}x")

    optimizer = make_optimizer(tc.optimizer, int(tc.training.num_train_steps))
    state = init_state(bidirectional, optimizer, jax.random.PRNGKey(1), length)
    step = make_train_step(bidirectional, optimizer, tc, vocab.codebook_size, vocab.mask_id)
    b = int(tc.training.batch_size)
    rng = np.random.default_rng(0)
    train_batch = dict(tokens=rng.integers(0, vocab.codebook_size, (b, n)).astype(np.int32),
                       cond_tokens=np.zeros((b, n), np.int32),
                       cond_mask=np.zeros((b, n), bool),
                       prefix=np.repeat(np.asarray(prefix[:1]), b, 0))
    holder = {"state": state}

    def train(_):
        holder["state"], metrics = step(holder["state"], train_batch)
        return metrics["loss"]
    t_train = _time(train, FLAGS.train_steps)
    print(f"train_batch={b} train_s_per_step={t_train:.4f} train_tokens_per_s={b * n / t_train:.0f}")


if __name__ == "__main__":
    app.run(main, argv=normalize_argv(sys.argv))
