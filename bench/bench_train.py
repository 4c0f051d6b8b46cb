"""Training and sampling speed on whatever backend JAX finds, with model FLOPs and MFU.

    PYTHONPATH=. python bench/bench_train.py --config=bair_b [--dtype=bfloat16] [--remat]
        [--batch=1] [--iters=3] [--parts=tokenizer_train,transformer_train,decode,autoregressive]

Per part: step time (best of `iters` after a compiling warm-up), clips/s or tokens/s, model FLOPs
per step (XLA's cost analysis of the compiled step; for transformer training, of the step without
dropout, whose random-bit hashing XLA counts as FLOPs), achieved FLOP/s, MFU against the device's
peak (bench/peaks.py: the vendor's dense bf16 / tf32 figure on a GPU or TPU, the matmul rate
measured in the same run on a CPU), peak memory (the device's peak bytes in use where it reports
them, else XLA's estimate of the compiled step: arguments + outputs + temporaries), the host's
page faults and kernel CPU seconds per step, and the seconds to trace + lower and to compile the
part's program. Training steps compile as the trainers compile them (xla_cpu.compile_step).

Parts: tokenizer encode / decode (inference), tokenizer training (generator step, GAN off unless
--gan), transformer training (COMMIT step), 12-step MAGVIT decoding and the autoregressive (KV
cache) baseline over the same 4x16x16 = 1024 token grid at the same model size and batch. The
autoregressive sampler is a loop (one jitted while loop); its FLOPs are those of its prefix pass
plus N-1 single-token steps, each costed on its own. MAGVIT decoding is a loop too (XLA's cost
analysis counts a loop body once): its FLOPs are its step count times one full pass. Weights are
random: only speed is measured.
"""
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, __file__.rsplit("/", 1)[0])    # bench/peaks.py, timing.py beside it  # local-only
import peaks  # noqa: E402
from timing import compiled_flops, time_calls  # noqa: E402

from magvit import host_memory, precision, xla_cpu  # noqa: E402
from magvit.configs.flags import define_config_flag, normalize_argv  # noqa: E402
from magvit.tokenizer.model import VQModel, grid_shape  # noqa: E402
from magvit.tokenizer.train_step import Models, to_unit, train_step  # noqa: E402
from magvit.transformer import autoregressive, decoding, tasks  # noqa: E402
from magvit.transformer.model import build_model  # noqa: E402
from magvit.transformer.train_step import init_state, make_optimizer, make_train_step  # noqa: E402

PARTS = ("tokenizer_encode", "tokenizer_decode", "tokenizer_train", "transformer_train", "decode",
         "autoregressive")
_CONFIG = define_config_flag("bair_b")
flags.DEFINE_enum("dtype", None, list(precision.DTYPES),
                  "Compute dtype of both models (default: the config's).")
flags.DEFINE_bool("remat", None, "Rematerialise blocks / layers (default: the config's).")
flags.DEFINE_integer("batch", 1, "Clips per step in every part.")
flags.DEFINE_integer("iters", 3, "Timed calls per part (after one compiling warm-up).")
flags.DEFINE_list("parts", list(PARTS), f"Which of {', '.join(PARTS)}.")
flags.DEFINE_bool("gan", False, "Time the tokenizer's GAN step (generator + discriminator).")
FLAGS = flags.FLAGS


def compiled_bytes(compiled) -> int:
    m = compiled.memory_analysis()
    if m is None:
        return 0
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def device_peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


class Part:
    """One timed function: `fn(*args)` jitted, compiled once, called `iters` times."""

    def __init__(self, name, fn, args, items: float, unit: str, flops: float | None = None,
                 donate_state: bool = False):
        self.name, self.items, self.unit = name, items, unit
        # compiled as the product compiles its programs (a program the product jits already, as
        # is); a training step as its trainer compiles it (xla_cpu.compile_step)
        jitted = fn if hasattr(fn, "lower") else xla_cpu.jit(fn)
        start = time.perf_counter()
        lowered = jitted.lower(*args)
        self.trace_seconds = time.perf_counter() - start
        start = time.perf_counter()
        self.compiled, self.split = (xla_cpu.compile_step(lowered) if donate_state
                                     else (lowered.compile(), False))
        self.compile_seconds = time.perf_counter() - start
        self.flops = compiled_flops(self.compiled) if flops is None else flops
        self.memory = compiled_bytes(self.compiled)
        # on the device before the first call, as the trainers' shard_batch leaves their batches:
        # a CPU program called while a numpy argument is still being copied in would be queued
        # to a pool thread (magvit/host_memory.py)
        self.args = list(host_memory.inputs_ready(jax.device_put(list(args))))
        self.threads_state = donate_state

    def call(self):
        out = self.compiled(*self.args)
        if self.threads_state:                    # training: the next step starts from this one
            self.args[0] = out[0]
        return out


def tokenizer_parts(config, batch: int, gan: bool):
    models = Models(config)
    state = models.init(jax.random.PRNGKey(0))
    clip = tuple(config.clip_shape)
    video = np.random.RandomState(0).randint(0, 256, (batch, *clip, 3)).astype(np.uint8)
    model = models.generator
    parts = {}
    encode = lambda p, v: model.apply({"params": p}, to_unit(v), method=VQModel.encode)[1]  # noqa
    ids = jax.jit(encode)(state.params, video)
    parts["tokenizer_encode"] = lambda: Part("tokenizer encode", encode, (state.params, video),
                                             batch, "clips/s")
    parts["tokenizer_decode"] = lambda: Part(
        "tokenizer decode", lambda p, i: model.apply({"params": p}, i, method=VQModel.decode_ids),
        (state.params, ids), batch, "clips/s")
    parts["tokenizer_train"] = lambda: Part(
        f"tokenizer train{' (GAN)' if gan else ''}",
        lambda s, b: train_step(models, s, b, gan=gan), (state, {"frames": video}), batch,
        "clips/s", donate_state=True)
    return parts


def transformer_parts(config, batch: int):
    tc = config.transformer
    grid = grid_shape(config.tokenizer.model, tuple(config.tokenizer.clip_shape))
    n = int(np.prod(grid))
    vocab = tasks.Vocabulary(config.tokenizer.model.codebook_size, config.dataset.num_classes,
                             tuple(tc.tasks))
    length = vocab.prefix_length + n
    prefix = jnp.asarray(vocab.prefix(tasks.task_from_config(tc.tasks[0], tc),
                                      np.zeros(batch, int)))
    bidirectional = build_model(tc, vocab.size, length)
    causal = build_model(tc, vocab.size, length, causal=True)
    optimizer = make_optimizer(tc.optimizer, int(tc.training.num_train_steps))
    state = init_state(bidirectional, optimizer, jax.random.PRNGKey(1), length)
    params = state.params
    rng = np.random.default_rng(0)
    train_batch = dict(tokens=rng.integers(0, vocab.codebook_size, (batch, n)).astype(np.int32),
                       cond_tokens=np.zeros((batch, n), np.int32),
                       cond_mask=np.zeros((batch, n), bool), prefix=np.asarray(prefix))
    step = make_train_step(bidirectional, optimizer, tc, vocab.codebook_size, vocab.mask_id)
    none = jnp.zeros((batch, n), bool)

    def magvit(p, key):
        fn = decoding.model_logits_fn(bidirectional, p, prefix, vocab.codebook_size)
        return decoding.decode(fn, key, jnp.zeros((batch, n), jnp.int32), none,
                               mask_id=vocab.mask_id, num_steps=tc.decoding.num_steps,
                               choice_temperature=tc.decoding.choice_temperature)

    def decode_flops():
        """`num_steps` full passes over the grid, as the decoding loop runs them."""
        fn = lambda p, t: decoding.model_logits_fn(  # noqa: E731
            bidirectional, p, prefix, vocab.codebook_size)(t, jnp.zeros_like(t))
        one = xla_cpu.jit(fn).lower(params, jnp.zeros((batch, n), jnp.int32)).compile()
        return int(tc.decoding.num_steps) * compiled_flops(one)

    def ar(p, key):
        return autoregressive.sample(causal, p, prefix, key, num_tokens=n,
                                     codebook_size=vocab.codebook_size)

    def ar_flops():
        """Prefix pass + (n - 1) single-token cached steps, as the sampler runs them."""
        cache = autoregressive.init_cache(causal, batch, length)
        apply = lambda p, c, t: causal.apply({"params": p, "cache": c}, t, decode=True,  # noqa
                                             mutable=["cache"])
        first = jax.jit(apply).lower(params, cache, prefix).compile()
        one = jax.jit(apply).lower(params, cache, prefix[:, :1]).compile()
        return compiled_flops(first) + (n - 1) * compiled_flops(one)

    def train_flops():
        """The step's FLOPs without dropout: the model's arithmetic, less the integer hashing
        that draws the dropout masks (which XLA's cost analysis counts as FLOPs: 65 of 718
        GFLOP at bair_b, batch 1)."""
        plain = tc.copy_and_resolve_references()
        plain.model.dropout_rate = plain.model.attention_dropout_rate = 0.0
        model = build_model(plain, vocab.size, length)
        plain_step = make_train_step(model, optimizer, plain, vocab.codebook_size, vocab.mask_id)
        return compiled_flops(plain_step.lower(state, train_batch).compile())

    key = jax.random.PRNGKey(0)
    return n, {
        "transformer_train": lambda: Part("transformer train", step, (state, train_batch),
                                          batch * n, "tokens/s", flops=train_flops(),
                                          donate_state=True),
        "decode": lambda: Part(f"MAGVIT {tc.decoding.num_steps}-step decode", magvit,
                               (params, key), batch, "clips/s", flops=decode_flops()),
        "autoregressive": lambda: Part(f"autoregressive {n}-step", ar, (params, key), batch,
                                       "clips/s", flops=ar_flops()),
    }


def main(argv):
    del argv
    host_memory.dispatch_on_calling_thread()   # as the trainers run their steps
    config = _CONFIG.value
    for section in (config.tokenizer, config.transformer):
        if FLAGS.dtype is not None:
            section.dtype = FLAGS.dtype
        if FLAGS.remat is not None:
            section.remat = FLAGS.remat
    unknown = set(FLAGS.parts) - set(PARTS)
    if unknown:
        raise app.UsageError(f"--parts: unknown {sorted(unknown)}; expected {', '.join(PARTS)}")
    dtype_of = {name: precision.compute_dtype(
        (config.tokenizer if name.startswith("tokenizer") else config.transformer).dtype)
        for name in PARTS}
    if len(set(dtype_of.values())) > 1:
        raise app.UsageError("give both models the same dtype (--dtype) for one MFU peak")
    dtype = dtype_of[PARTS[0]]
    peak, peak_source = peaks.device_peak(dtype)
    device = jax.devices()[0]
    print(f"backend {jax.default_backend()}: {device.device_kind} x{jax.device_count()}; "
          f"config {config.name}; dtype tokenizer {config.tokenizer.dtype} / transformer "
          f"{config.transformer.dtype}; remat {config.tokenizer.remat}/{config.transformer.remat};"
          f" batch {FLAGS.batch}")
    print("peak: " + (f"{peak / 1e12:.1f} TFLOP/s ({peak_source})" if peak else peak_source))
    builders = tokenizer_parts(config.tokenizer, FLAGS.batch, FLAGS.gan)
    num_tokens, more = transformer_parts(config, FLAGS.batch)
    builders.update(more)
    header = (f"{'part':28s} {'step s':>9s} {'rate':>16s} {'GFLOP/step':>11s} {'TFLOP/s':>8s} "
              f"{'matmul':>8s} {'MFU':>6s} {'mem GiB':>8s} {'faults':>8s} {'sys s':>6s} "
              f"{'trace s':>8s} {'compile s':>9s}")
    print(header)
    times = {}
    for name in PARTS:
        if name not in FLAGS.parts:
            continue
        part = builders[name]()
        timing = time_calls(part.call, FLAGS.iters)
        seconds = times[name] = timing.seconds
        achieved = part.flops / seconds
        part_peak = peak or peaks.measured_matmul_peak(dtype_of[name])
        device_bytes = device_peak_bytes()
        memory = device_bytes if device_bytes is not None else part.memory
        name = part.name + (" *" if part.split else "")
        print(f"{name:28s} {seconds:9.4f} {part.items / seconds:10.1f} {part.unit:>5s} "
              f"{part.flops / 1e9:11.1f} {achieved / 1e12:8.3f} {part_peak / 1e12:8.3f} "
              f"{achieved / part_peak:6.1%} {memory / 2 ** 30:8.2f} {timing.page_faults:8.0f} "
              f"{timing.system_seconds:6.2f} {part.trace_seconds:8.2f} "
              f"{part.compile_seconds:9.2f}", flush=True)
    if "decode" in times and "autoregressive" in times:
        print(f"12-step decoding vs autoregressive ({num_tokens} tokens, batch {FLAGS.batch}): "
              f"{times['autoregressive'] / times['decode']:.1f}x faster per clip")
    print("faults, sys s: host page faults and kernel CPU seconds per step (mean); trace s, "
          "compile s: jit(...).lower(...) and .compile() of the part's program, once")
    print(f"*: a training step compiled with its temporaries split into heaps of "
          f"{xla_cpu.HEAP_BYTES >> 20} MiB or of its largest buffer (magvit/xla_cpu.py, "
          f"compile_step)")
    print("memory: " + ("the device's peak bytes in use so far" if device_peak_bytes() is not None
                        else "XLA's estimate per compiled step (arguments + outputs + temps)"))
    print("targets: CPU tokenizer / transformer training >= 60% of the measured matmul rate; GPU "
          "bf16 transformer training MFU >= 40%, tokenizer training >= 30%, 12-step decoding >= "
          "60x the autoregressive baseline at batch 1, bf16 >= 1.5x float32 step throughput")


if __name__ == "__main__":
    app.run(main, argv=normalize_argv(sys.argv))
