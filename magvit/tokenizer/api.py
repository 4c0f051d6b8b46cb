"""`Tokenizer`: the trained 3D-VQ as a function uint8 clips <-> int32 token grids.

    tokenizer = Tokenizer.load(workdir)            # config.json + latest checkpoint, EMA params
    tokens = tokenizer.encode(video)                # uint8 [B, T, H, W, 3] -> int32 [B, t, h, w]
    pending = tokenizer.encode_async(video)         # the same, returning before it is computed
    video = tokenizer.decode(tokens)                # int [B, t, h, w] -> uint8 [B, T, H, W, 3]
    Tokenizer.from_params(tokenizer_config, params) # from in-memory parameters
    save_random_tokenizer(workdir, config)          # an untrained one (smoke tests, benchmarks)

The model is fully convolutional: any T, H, W divisible by the downsampling factors works;
`clip_shape` and `grid_shape` are the configured ones.
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from magvit import checkpoints, precision, train_utils, xla_cpu
from magvit.tokenizer import model as model_lib
from magvit.tokenizer import quantizers
from magvit.tokenizer.train_step import Models, to_unit


class Tokenizer:
    def __init__(self, config: ml_collections.ConfigDict, params, checkpoint_id: str | None = None):
        """config: the tokenizer section (`config.tokenizer`); params: VQModel parameters."""
        if int(config.model.get("spatial_dims", 3)) != 3:
            raise ValueError("a 2D image tokenizer (tokenizer.model.spatial_dims=2) does not "
                             "tokenize videos: inflate it into a video tokenizer with "
                             "--config.tokenizer.model.init_from_2d=<its work directory>")
        self.config = config
        self.params = params
        self._model = model_lib.VQModel(config.model, dtype=precision.model_options(
            config, "tokenizer")["dtype"])
        self.clip_shape = tuple(int(s) for s in config.clip_shape)
        self.factors = model_lib.downsampling_factors(config.model)
        self.grid_shape = model_lib.grid_shape(config.model, self.clip_shape)
        self.codebook_size = quantizers.codebook_size(config.model)
        self.checkpoint_id = checkpoint_id or train_utils.tree_hash(params)
        model = self._model
        self._encode = xla_cpu.jit(lambda p, v: model.apply(
            {"params": p}, to_unit(v), method=model_lib.VQModel.encode)[1])
        self._decode = xla_cpu.jit(lambda p, ids: jnp.round(jnp.clip(model.apply(
            {"params": p}, ids, method=model_lib.VQModel.decode_ids), 0, 1) * 255).astype(jnp.uint8))

    @classmethod
    def from_params(cls, config: ml_collections.ConfigDict, params) -> "Tokenizer":
        return cls(config, params)

    @classmethod
    def load(cls, checkpoint_dir: str, step: int | None = None) -> "Tokenizer":
        """From a training work directory (config.json + checkpoints/), with the EMA parameters."""
        config = checkpoints.load_config(checkpoint_dir).tokenizer
        models = Models(config)
        template = jax.eval_shape(models.init, jax.random.PRNGKey(0))
        checkpointer = checkpoints.Checkpointer(checkpoint_dir)
        if checkpointer.latest_step() is None:
            raise FileNotFoundError(f"no checkpoint under {checkpointer.directory}")
        sharding = train_utils.replicated(train_utils.make_mesh())
        state, _ = checkpointer.restore(template, step=step, default_sharding=sharding)
        checkpointer.close()
        return cls(config, state.ema_params)

    def encode(self, video) -> np.ndarray:
        """uint8 [B, T, H, W, 3] -> int32 token ids [B, T/ft, H/fh, W/fw]."""
        return np.asarray(self.encode_async(video), np.int32)

    def encode_async(self, video) -> jax.Array:
        """As `encode`, but returns at once: the ids are a jax.Array still being computed (on any
        backend, CPU included), so the caller can prepare the next batch meanwhile; reading it
        (np.asarray) waits for the result."""
        video = np.asarray(video)
        if video.dtype != np.uint8:
            raise TypeError(f"Tokenizer.encode expects uint8 video, got {video.dtype}")
        if video.ndim != 5 or video.shape[-1] != 3:
            raise ValueError(f"Tokenizer.encode expects [B, T, H, W, 3], got shape {video.shape}")
        bad = [f"{name}={size} (factor {f})" for name, size, f
               in zip("THW", video.shape[1:4], self.factors) if size % f or size == 0]
        if bad:
            raise ValueError(f"Tokenizer.encode: {', '.join(bad)} not divisible by the "
                             "downsampling factor")
        return self._encode(self.params, video)

    def decode(self, tokens) -> np.ndarray:
        """int token ids [B, t, h, w] -> uint8 [B, t*ft, h*fh, w*fw, 3]."""
        tokens = np.asarray(tokens)
        if not np.issubdtype(tokens.dtype, np.integer):
            raise TypeError(f"Tokenizer.decode expects integer tokens, got {tokens.dtype}")
        if tokens.ndim != 4:
            raise ValueError(f"Tokenizer.decode expects [B, t, h, w] tokens, got {tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.codebook_size):
            raise ValueError(f"Tokenizer.decode: ids outside [0, {self.codebook_size}): "
                             f"min {tokens.min()}, max {tokens.max()}")
        return np.asarray(self._decode(self.params, tokens.astype(np.int32)))


def save_random_tokenizer(workdir: str, config: ml_collections.ConfigDict, seed: int = 0) -> str:
    """Writes an untrained tokenizer work directory (config.json + a step-0 checkpoint, the layout
    training writes) with random weights of the right shapes, for smoke tests and benchmarks: it
    costs what a trained one costs to run. `config`: a full config (with a `tokenizer` section).
    The weights come from `jax.eval_shape` plus numpy, so no slow model init."""
    template = jax.eval_shape(Models(config.tokenizer).init, jax.random.PRNGKey(0))
    rng = np.random.RandomState(seed)
    state = jax.tree.map(lambda leaf: (0.2 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)
                         if np.issubdtype(leaf.dtype, np.floating)
                         else np.zeros(leaf.shape, leaf.dtype), template)
    checkpoints.save_config(config, str(workdir))
    checkpointer = checkpoints.Checkpointer(str(workdir))
    checkpointer.save(0, state, force=True)
    checkpointer.close()
    return str(workdir)
