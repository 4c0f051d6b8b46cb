"""magvit/xla_cpu.py: on a CPU the product's programs compile without YNNPACK fusions, give the
same results as XLA's defaults up to float rounding, and a user's own XLA_FLAGS setting wins."""
import jax
import numpy as np

from magvit import train_utils, xla_cpu
from magvit.tokenizer.api import Tokenizer
from magvit.tokenizer.train_step import Models, jit_train_step
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
