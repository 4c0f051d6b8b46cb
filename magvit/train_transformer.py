"""Trains MAGVIT's transformer with COMMIT on pre-tokenized clips.

  python -m magvit.train_transformer --config=tiny --data='tokens/train-*.tfrecord' \
      --tokenizer=runs/tokenizer --workdir=runs/transformer

Each step trains one task for the whole batch (official: tasks in a seeded permutation of a
weighted sequence, `transformer.task_sampling="per_step"`; "per_example" draws one per example),
takes the examples' condition tokens (precomputed in the record, or built with the tokenizer and
cached), and runs the jitted COMMIT step data-parallel over all devices. The run resumes from
the latest checkpoint in `--workdir` (state, RNG and data position: a resumed run equals an
uninterrupted one); the config is saved there as config.json, TensorBoard scalars under
tensorboard/.
"""
import os
import sys

import jax
import numpy as np

from magvit import checkpoints, cli, distributed, host_memory, train_utils
from magvit.configs.flags import check_steps
from magvit.token_data import describe, token_iterator
from magvit.transformer import conditions, decoding, tasks as task_lib
from magvit.transformer.model import build_model
from magvit.transformer.train_step import TrainState, init_state, make_optimizer, make_train_step


# What a resumed run must share with the checkpoints it restores (the state's shapes).
RESUME_KEYS = ("transformer.model", "transformer.tasks", "dataset.num_classes")


class TransformerSetup:
    """Everything derived from (config, tokenizer): vocabulary, tasks, model, optimiser."""

    def __init__(self, config, tokenizer):
        tc = config.transformer
        self.config = config
        self.tokenizer = tokenizer
        self.grid_shape = tuple(int(s) for s in tokenizer.grid_shape)
        self.clip_frames = int(tokenizer.clip_shape[0])
        self.num_tokens = int(np.prod(self.grid_shape))
        self.tasks = task_lib.get_tasks(tc)
        self.vocab = task_lib.Vocabulary(int(tokenizer.codebook_size),
                                         int(config.dataset.num_classes), tuple(tc.tasks))
        self.sequence_length = self.vocab.prefix_length + self.num_tokens
        self.model = build_model(tc, self.vocab.size, self.sequence_length)
        self.optimizer = make_optimizer(tc.optimizer, int(tc.training.num_train_steps))
        self.task_sequence = task_sequence(len(self.tasks), config.seed)

    def init_state(self, seed: int) -> TrainState:
        return init_state(self.model, self.optimizer, jax.random.PRNGKey(seed),
                          self.sequence_length)

    def token_mask(self, task) -> np.ndarray:
        return task.known_mask(self.grid_shape, self.clip_frames).reshape(-1)

    def sample_tokens(self, params, prefix, cond_tokens, cond_mask, rng, uncond_prefix=None):
        d = self.config.transformer.decoding
        logits_fn = decoding.model_logits_fn(
            self.model, params, prefix, self.vocab.codebook_size, uncond_prefix,
            float(d.get("guidance_scale", 0.0)))
        return decoding.decode(logits_fn, rng, cond_tokens, cond_mask, mask_id=self.vocab.mask_id,
                               num_steps=int(d.num_steps),
                               choice_temperature=float(d.choice_temperature),
                               mask_schedule=d.mask_schedule,
                               condition_mode=d.get("condition_mode", "refine"),
                               temperature=float(d.get("temperature", 1.0)),
                               top_k=int(d.get("top_k", 0)), top_p=float(d.get("top_p", 0.0)))


def task_sequence(num_tasks: int, seed: int, weights=None) -> np.ndarray:
    """The official per-step task order (`maskgvt_train_lib.get_task_idx_sequence`): each task
    index repeated round(100 * w / min(1, min w)) times, in a seeded random permutation; step s
    trains task sequence[s % len(sequence)]."""
    weights = np.ones(num_tasks) if weights is None else np.asarray(weights, np.float64)
    counts = np.round(weights * 100 / min(1.0, float(weights.min()))).astype(int)
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_tasks), counts))


TASK_SAMPLING = ("per_step", "per_example")


def choose_tasks(setup: TransformerSetup, step: int, batch: int, seed: int) -> np.ndarray:
    """int [batch]: the task index of each example at `step`."""
    mode = setup.config.transformer.get("task_sampling", "per_step")
    if mode == "per_step":
        return np.full(batch, setup.task_sequence[step % len(setup.task_sequence)])
    if mode == "per_example":
        return np.random.default_rng([seed, step]).integers(len(setup.tasks), size=batch)
    raise ValueError(f"transformer.task_sampling={mode!r}: expected one of "
                     f"{', '.join(TASK_SAMPLING)}")


def assemble_batch(setup: TransformerSetup, records: dict, step: int, builder,
                   seed: int = 0) -> dict:
    """Host-side batch of the COMMIT step: the step's task(s), condition tokens and prefix."""
    tokens = np.asarray(records["tokens"], np.int32)
    batch = len(tokens)
    choice = choose_tasks(setup, step, batch, seed)
    cond_tokens = np.zeros((batch, setup.num_tokens), np.int32)
    cond_mask = np.zeros((batch, setup.num_tokens), bool)
    prefix = np.zeros((batch, setup.vocab.prefix_length), np.int32)
    for index, task in enumerate(setup.tasks):
        rows = np.flatnonzero(choice == index)
        if not rows.size:
            continue
        precomputed = records.get(f"condition/{task.name}")
        if precomputed is not None:
            cond = np.asarray(precomputed)[rows]
        else:
            cond = builder.from_tokens(task, tokens[rows], records["clip_id"][rows])
        cond_tokens[rows] = cond.reshape(len(rows), -1)
        cond_mask[rows] = setup.token_mask(task)
        prefix[rows] = setup.vocab.prefix(task, records["label"][rows])
    return dict(tokens=tokens.reshape(batch, -1), cond_tokens=cond_tokens, cond_mask=cond_mask,
                prefix=prefix)


def _check_records(setup: TransformerSetup, info: dict, pattern: str) -> None:
    if info["grid_shape"] != setup.grid_shape or info["codebook_size"] != setup.vocab.codebook_size:
        raise ValueError(f"--data={pattern!r}: token grid {info['grid_shape']} / codebook "
                         f"{info['codebook_size']} do not match the tokenizer's "
                         f"{setup.grid_shape} / {setup.vocab.codebook_size}")
    if info["tokenizer_id"] != setup.tokenizer.checkpoint_id:
        raise ValueError(f"--data={pattern!r} was tokenized by tokenizer {info['tokenizer_id']}, "
                         f"but --tokenizer is {setup.tokenizer.checkpoint_id}")


def train(config, tokens_pattern: str, tokenizer_dir: str, workdir: str, *,
          stop_at_step: int | None = None) -> dict:
    """Trains (or resumes) the transformer; returns the last logged metrics plus `step`.

    `stop_at_step` ends the run early (as if interrupted) without changing the schedule.
    """
    from magvit.tokenizer.api import Tokenizer
    return train_with_tokenizer(config, tokens_pattern, Tokenizer.load(tokenizer_dir), workdir,
                                stop_at_step=stop_at_step)


def train_with_tokenizer(config, tokens_pattern: str, tokenizer, workdir: str, *,
                         stop_at_step: int | None = None) -> dict:
    setup = TransformerSetup(config, tokenizer)
    tc = config.transformer
    training = tc.training
    info = describe(tokens_pattern, tuple(tc.tasks))
    _check_records(setup, info, tokens_pattern)
    if any(t.class_conditional for t in setup.tasks) and not config.dataset.num_classes:
        raise ValueError("config.transformer.tasks has a class-conditional task but "
                         "config.dataset.num_classes is 0")

    mesh = train_utils.make_mesh()
    train_utils.check_batch_size(training.batch_size, mesh, "config.transformer.training.batch_size")
    check_steps(training.num_train_steps, "transformer.training.num_train_steps")
    checkpoints.check_resume(config, workdir, RESUME_KEYS)
    ckpt = checkpoints.Checkpointer(workdir, training.max_checkpoints_to_keep,
                                    training.checkpoint_every_steps)
    state = setup.init_state(config.seed)
    meta = {}
    if ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state, default_sharding=train_utils.replicated(mesh))
        trained_with = meta.get("tokenizer_id")
        if trained_with and trained_with != tokenizer.checkpoint_id:
            ckpt.close()
            raise ValueError(f"--workdir={workdir} holds a transformer trained on tokens of "
                             f"tokenizer {trained_with}, but --tokenizer is "
                             f"{tokenizer.checkpoint_id}: it cannot resume with another "
                             "tokenizer; give a new --workdir")
    checkpoints.save_config(config, workdir)   # only once the restore worked
    state = train_utils.replicate(state, mesh)
    step = int(state.step)
    total = int(training.num_train_steps)
    last = min(total, stop_at_step) if stop_at_step is not None else total

    data = token_iterator(tokens_pattern, setup.grid_shape, training.batch_size,
                          conditions=info["conditions"], seed=config.seed,
                          shuffle_buffer=training.shuffle_buffer,
                          position=meta.get("data_position"),
                          tokenizer_id=tokenizer.checkpoint_id)
    builder = conditions.ConditionTokens(tokenizer, training.condition_cache_size,
                                         chunk=training.batch_size)
    train_step = make_train_step(setup.model, setup.optimizer, tc, setup.vocab.codebook_size,
                                 setup.vocab.mask_id)
    writer = train_utils.MetricWriter(os.path.join(workdir, "tensorboard"))
    bar = train_utils.progress_bar(total, step, desc="transformer")
    scalars = dict(meta.get("metrics", {}))
    try:
        while step < last:
            host = assemble_batch(setup, next(data), step, builder, config.seed)
            state, metrics = train_step(state, train_utils.shard_batch(host, mesh))
            step += 1
            bar.update(1)
            if step % training.log_every_steps == 0 or step == last:
                scalars = train_utils.to_scalars(metrics)
                scalars["tokens_per_step"] = float(host["tokens"].size)
                writer.write_scalars(step, scalars)
                bar.set_postfix(loss=f"{scalars['loss']:.3f}",
                                masked=f"{scalars['masked_loss']:.3f}")
            ckpt.save(step, state, dict(data_position=data.position.to_dict(), metrics=scalars,
                                        tokenizer_id=tokenizer.checkpoint_id), force=step == last)
    finally:
        bar.close()
        writer.close()
        ckpt.close()
    return dict(scalars, step=step)


def _define_flags(fv) -> None:
    from absl import flags
    flags.DEFINE_string("data", None, "Glob of token TFRecords (comma-separated globs allowed).",
                        flag_values=fv)
    flags.DEFINE_string("tokenizer", None, "Tokenizer work directory (magvit.train_tokenizer).",
                        flag_values=fv)
    flags.DEFINE_string("workdir", None, "Where checkpoints, config.json and TensorBoard go.",
                        flag_values=fv)


def _main(fv, _) -> None:
    host_memory.dispatch_on_calling_thread()   # before JAX starts: large CPU steps keep memory
    distributed.initialize()   # multi-host jobs (Vertex AI, SLURM, TPU pods); no-op alone
    result = train(fv.config, fv.data, fv.tokenizer, fv.workdir)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in sorted(result.items())))


PROGRAM = cli.Program("magvit.train_transformer", __doc__, _define_flags,
                      required=("data", "tokenizer", "workdir"))


def main(argv: list[str] | None = None) -> int:
    return PROGRAM.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
