"""magvit/xla_cpu.py: on a CPU the product's programs compile without YNNPACK fusions, give the
same results as XLA's defaults up to float rounding, and a user's own XLA_FLAGS setting wins;
a training step with temporaries over glibc's mmap threshold splits them into heaps when that
costs little memory and no buffer exceeds the threshold, and computes exactly the same."""
import jax
import jax.numpy as jnp
import numpy as np

from magvit import train_utils, xla_cpu
from magvit.configs import get_config
from magvit.tokenizer.api import Tokenizer
from magvit.tokenizer.model import grid_shape
from magvit.tokenizer.train_step import Models, jit_train_step
from magvit.transformer import tasks
from magvit.transformer.model import build_model
from magvit.transformer.train_step import init_state, make_optimizer, make_train_step
from tests.test_precision import _transformer
from tests.test_tokenizer_model import micro_config

YNN_KIND = '"kind":"__ynn_fusion"'   # how a compiled program marks a YNNPACK fusion


def test_cpu_options_turn_ynn_fusions_off_unless_xla_flags_name_them(monkeypatch):
    assert jax.default_backend() == "cpu"
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    assert xla_cpu.compiler_options() == {"xla_cpu_experimental_ynn_fusion_type": ""}
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=invalid")
    assert xla_cpu.compiler_options() is None


def test_tokenizer_programs_compile_without_ynn_fusions_and_agree_with_defaults():
    config = micro_config()
    params = Models(config).init(jax.random.PRNGKey(0)).params
    tok = Tokenizer.from_params(config, params)
    video = np.random.RandomState(0).randint(0, 256, (2, 4, 16, 16, 3)).astype(np.uint8)
    # pylint: disable=protected-access
    product = tok._encode.lower(params, video).compile().as_text()
    assert YNN_KIND not in product
    # XLA's defaults on this jaxlib do use YNNPACK here: the option changes the program.
    model = tok._model

    def features(p, v):
        return model.apply({"params": p}, v / 255.0, method=type(model).encode)[0]
    defaults = jax.jit(features).lower(params, video).compile()
    assert YNN_KIND in defaults.as_text()
    ours = xla_cpu.jit(features)(params, video)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(defaults(params, video)),
                               rtol=1e-4, atol=1e-5)


def test_training_steps_compile_without_ynn_fusions():
    """Both trainers' steps (the programs that take a run's time) are built by xla_cpu.jit."""
    config = micro_config()
    models = Models(config)
    state = models.init(jax.random.PRNGKey(0))
    video = np.random.RandomState(0).randint(0, 256, (1, 4, 16, 16, 3)).astype(np.uint8)
    step = jit_train_step(models, train_utils.make_mesh(), gan=False)
    assert YNN_KIND not in step.lower(state, {"frames": video}).compile().as_text()
    tc, vocab, model = _transformer()
    optimizer = make_optimizer(tc.optimizer, 100)
    state = init_state(model, optimizer, jax.random.PRNGKey(0), 34)
    batch = dict(tokens=np.zeros((2, 32), np.int32), cond_tokens=np.zeros((2, 32), np.int32),
                 cond_mask=np.zeros((2, 32), bool), prefix=np.full((2, 2), vocab.size - 1, np.int32))
    step = make_train_step(model, optimizer, tc, 64, vocab.mask_id)
    assert YNN_KIND not in step.lower(state, batch).compile().as_text()
    assert YNN_KIND in jax.jit(step.__wrapped__).lower(state, batch).compile().as_text()


def _tiny_transformer_step(batch_size: int = 8):
    """The demo's transformer step (config `tiny`) at its batch: 106 MiB of temporaries."""
    config = get_config("tiny")
    tc = config.transformer
    grid = grid_shape(config.tokenizer.model, tuple(config.tokenizer.clip_shape))
    n = int(np.prod(grid))
    vocab = tasks.Vocabulary(config.tokenizer.model.codebook_size, config.dataset.num_classes,
                             tuple(tc.tasks))
    model = build_model(tc, vocab.size, vocab.prefix_length + n)
    optimizer = make_optimizer(tc.optimizer, 100)
    state = init_state(model, optimizer, jax.random.PRNGKey(0), vocab.prefix_length + n)
    rng = np.random.default_rng(0)
    batch = dict(tokens=rng.integers(0, vocab.codebook_size, (batch_size, n)).astype(np.int32),
                 cond_tokens=np.zeros((batch_size, n), np.int32),
                 cond_mask=np.zeros((batch_size, n), bool),
                 prefix=np.asarray(vocab.prefix(tasks.task_from_config(tc.tasks[0], tc),
                                                np.zeros(batch_size, int))))
    return make_train_step(model, optimizer, tc, vocab.codebook_size, vocab.mask_id), state, batch


def test_step_with_temporaries_over_the_mmap_threshold_splits_them_and_computes_the_same(
        monkeypatch):
    step, state, batch = _tiny_transformer_step()
    lowered = step.lower(state, batch)
    single = lowered.compile()
    assert single.memory_analysis().temp_size_in_bytes > xla_cpu.MMAP_MAX_BYTES
    # The program the trainer's calls run (built by compile_step) is split ...
    split, is_split = step.compile(state, batch)
    assert is_split
    assert (split.memory_analysis().temp_size_in_bytes
            <= xla_cpu.MAX_HEAP_GROWTH * single.memory_analysis().temp_size_in_bytes)
    # ... and computes exactly what the single block does.
    ours, theirs = step(state, batch), single(state, batch)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # A user's XLA_FLAGS naming the option wins.
    monkeypatch.setenv("XLA_FLAGS", f"--{xla_cpu.HEAP_OPTION}=-1")
    assert not xla_cpu.compile_step(lowered)[1]


def _counting_compiles(monkeypatch) -> list:
    compiles = []
    original = jax.stages.Lowered.compile
    monkeypatch.setattr(jax.stages.Lowered, "compile",
                        lambda self, *a, **k: compiles.append(a) or original(self, *a, **k))
    return compiles


def test_split_heaps_hold_the_largest_buffer_and_the_split_is_kept_only_within_the_bound(
        monkeypatch):
    """Buffers of 16 MiB, over HEAP_BYTES and under glibc's threshold: the split build's heaps are
    16 MiB, so no buffer needs a heap of its own and the temporaries do not grow (with 12 MiB
    heaps they grew from 64.5 to 80 MiB). A split over MAX_HEAP_GROWTH is not kept."""
    def five_products(a, b):
        first = jnp.max((a @ b) * ((a + 1) @ b) + (a + 2) @ b, axis=0)
        return first + jnp.max(((a + first[:64]) @ b) * ((a + 3) @ b), axis=0)
    args = (np.ones((2048, 64), np.float32), np.ones((64, 2048), np.float32))
    lowered = xla_cpu.jit(five_products).lower(*args)
    single_program = lowered.compile()
    single = single_program.memory_analysis().temp_size_in_bytes
    assert single > xla_cpu.MMAP_MAX_BYTES
    assert xla_cpu.largest_buffer_bytes(single_program.as_text()) == 16 << 20 > xla_cpu.HEAP_BYTES
    compiled, is_split = xla_cpu.compile_step(lowered)
    assert is_split and compiled.memory_analysis().temp_size_in_bytes == single
    np.testing.assert_array_equal(compiled(*args), single_program(*args))
    monkeypatch.setattr(xla_cpu, "MAX_HEAP_GROWTH", 0.99)
    compiles = _counting_compiles(monkeypatch)
    compiled, is_split = xla_cpu.compile_step(lowered)
    assert not is_split and len(compiles) == 2      # the split build was made, and not kept
    assert compiled.memory_analysis().temp_size_in_bytes == single


def test_step_with_a_buffer_over_the_mmap_threshold_is_not_split_nor_compiled_twice(monkeypatch):
    """Two 64 MiB products: split, each would still be mapped afresh every step, so compile_step
    does not build the split program at all (for bair_b's steps that build took 11-15 s)."""
    def two_products(a, b):
        first = jnp.max(a @ b, axis=0)
        return first + jnp.max((a + first[:64]) @ b, axis=0)
    args = (np.ones((4096, 64), np.float32), np.ones((64, 4096), np.float32))
    lowered = xla_cpu.jit(two_products).lower(*args)
    single = lowered.compile()
    assert xla_cpu.largest_buffer_bytes(single.as_text()) == 4096 * 4096 * 4
    compiles = _counting_compiles(monkeypatch)
    compiled, is_split = xla_cpu.compile_step(lowered)
    assert not is_split and len(compiles) == 1
    assert (compiled.memory_analysis().temp_size_in_bytes
            == single.memory_analysis().temp_size_in_bytes)


_HLO = """HloModule m, is_scheduled=true

%fused_computation (param_0: f32[1024,1024]) -> f32[1024] {
  %param_0 = f32[1024,1024]{1,0} parameter(0)
  %big = f32[4096,4096]{1,0} broadcast(%param_0), dimensions={0,1}
  ROOT %reduce = f32[1024]{0} reduce(%big, %zero), dimensions={1}, to_apply=%add
}

%body (arg: (s32[], f32[512,512])) -> (s32[], f32[512,512]) {
  %arg = (s32[], f32[512,512]{1,0}) parameter(0)
  %gte = f32[512,512]{1,0} get-tuple-element(%arg), index=1
  %loop_buffer = f32[512,1024]{1,0} fusion(%gte), kind=kLoop, calls=%fused_computation
  ROOT %t = (s32[], f32[512,512]{1,0}) tuple(%i, %gte)
}

ENTRY %main (p: f32[2048,2048]) -> (f32[1024], bf16[1024,1024]) {
  %p = f32[2048,2048]{1,0} parameter(0)
  %out = (f32[1024]{0}, bf16[1024,1024]{1,0}) fusion(%p), kind=kLoop, calls=%fused_computation
  %while = (s32[], f32[512,512]{1,0}) while(%init), condition=%cond, body=%body
  ROOT %r = (f32[1024]{0}, bf16[1024,1024]{1,0}) tuple(%out)
}
"""


def test_largest_buffer_counts_materialised_arrays_only():
    # Not the fused broadcast (64 MiB) nor the 16 MiB argument: the loop body's fusion output.
    assert xla_cpu.largest_buffer_bytes(_HLO) == 512 * 1024 * 4
    # Without it: the bf16 output of the entry's multi-output fusion.
    assert xla_cpu.largest_buffer_bytes(_HLO.replace("f32[512,1024]", "s8[16]")) == 1024 * 1024 * 2


def test_small_steps_compile_once_per_input_signature(monkeypatch):
    """A step under the threshold compiles once (no second build), and again for new shapes."""
    compiles = _counting_compiles(monkeypatch)
    step = xla_cpu.jit_step(lambda x: x * 2)
    np.testing.assert_array_equal(step(np.arange(3)), [0, 2, 4])
    np.testing.assert_array_equal(step(np.arange(3) + 1), [2, 4, 6])
    assert len(compiles) == 1
    np.testing.assert_array_equal(step(np.arange(4)), [0, 2, 4, 6])
    assert len(compiles) == 2
