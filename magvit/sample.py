"""Samples videos with a trained transformer and tokenizer: any task the model was trained on.

  python -m magvit.sample --task=frame_prediction --tokenizer=runs/tokenizer \
      --transformer=runs/transformer --input=clip.mp4 --out=samples/ [--num_samples=4] [--seed=0]
  python -m magvit.sample --task=class_conditional --class=2 --tokenizer=... --transformer=... \
      --out=samples/

Writes `sample_NN.mp4` (and `.gif`) per sample and `contact_sheet.png`: one row per sample,
condition | sample | truth (truth only when an input clip was given), frames left to right.
The input clip's first T frames are used; it must already have the tokenizer's H x W.
"""
import os

import jax
import numpy as np

from magvit import checkpoints, cli, train_utils, xla_cpu
from magvit.train_transformer import TransformerSetup
from magvit.transformer import conditions, tasks as task_lib


class Sampler:
    """A trained transformer (restored from its work directory) plus its tokenizer."""

    def __init__(self, transformer_dir: str, tokenizer):
        config = checkpoints.load_config(transformer_dir)
        self.setup = TransformerSetup(config, tokenizer)
        ckpt = checkpoints.Checkpointer(transformer_dir)
        if ckpt.latest_step() is None:
            raise FileNotFoundError(f"--transformer={transformer_dir!r}: no checkpoint in "
                                    f"{ckpt.directory}")
        template = jax.eval_shape(lambda: self.setup.init_state(0))
        state, meta = ckpt.restore(template, default_sharding=train_utils.replicated(
            train_utils.make_mesh()))
        trained_with = {step: (ckpt.read_meta(step) or {}).get("tokenizer_id")
                         for step in ckpt.all_steps()}
        trained_with[int(state.step)] = meta.get("tokenizer_id")   # the step restored
        other = {step: t for step, t in trained_with.items()
                 if t and t != tokenizer.checkpoint_id}
        if other:
            raise ValueError(f"--transformer={transformer_dir!r} was trained on tokens of tokenizer "
                             f"{sorted(set(other.values()))[0]} (checkpoint step(s) "
                             f"{sorted(other)}), but --tokenizer is {tokenizer.checkpoint_id}")
        ckpt.close()
        self.params = state.params
        self.step = int(state.step)
        self.tokenizer = tokenizer
        self.conditions = conditions.ConditionTokens(tokenizer)
        self._sample_tokens = xla_cpu.jit(self.setup.sample_tokens)

    @property
    def config(self):
        return self.setup.config

    def generate(self, task: str, condition_video=None, class_id=None, num_samples: int = 1,
                 seed: int = 0) -> np.ndarray:
        """uint8 [B, T, H, W, 3]: `num_samples` samples per condition clip (or per class).

        `class_id`: one class for the whole batch, or an int array with one class per example.
        """
        setup = self.setup
        if task not in setup.vocab.tasks:
            raise ValueError(f"the model was not trained on task {task!r}; it knows "
                             f"{', '.join(setup.vocab.tasks)}")
        spec = task_lib.task_from_config(task, setup.config.transformer)
        clip_shape = tuple(int(s) for s in self.tokenizer.clip_shape)
        video = None
        if condition_video is not None:
            video = np.asarray(condition_video)
            if video.ndim == 4:
                video = video[None]
            if video.ndim != 5 or tuple(video.shape[1:]) != (*clip_shape, 3):
                raise ValueError(f"input of the wrong size: got {list(video.shape)}, the tokenizer "
                                 f"expects [B, {', '.join(map(str, clip_shape))}, 3] uint8")
            video = np.repeat(video.astype(np.uint8), num_samples, axis=0)
        elif spec.has_condition:
            raise ValueError(f"task {task!r} needs a condition video (--input)")
        if spec.class_conditional and class_id is None:
            raise ValueError(f"task {task!r} needs a class (--class)")
        batch = len(video) if video is not None else num_samples
        classes = np.asarray(0 if class_id is None else class_id, np.int64)
        if classes.ndim and classes.shape != (batch,):
            raise ValueError(f"class_id: one class or one per example ({batch}), got "
                             f"{list(classes.shape)}")
        labels = np.broadcast_to(classes, (batch,))
        prefix = setup.vocab.prefix(spec, labels)
        uncond_prefix = setup.vocab.prefix(spec, labels, unconditional=True)
        if spec.has_condition:
            cond_tokens = self.conditions.from_pixels(spec, video).reshape(batch, -1)
        else:
            cond_tokens = np.zeros((batch, setup.num_tokens), np.int32)
        cond_mask = np.broadcast_to(setup.token_mask(spec), (batch, setup.num_tokens))
        tokens = self._sample_tokens(self.params, prefix, cond_tokens, cond_mask,
                                     jax.random.PRNGKey(seed), uncond_prefix)
        out = np.asarray(self.tokenizer.decode(np.asarray(tokens).reshape(batch, *setup.grid_shape)))
        if spec.has_condition and setup.config.transformer.decoding.paste_condition:
            known = spec.known_mask(clip_shape, clip_shape[0])[None, ..., None]
            out = np.where(known, video, out)
        return out.astype(np.uint8)


def generate(transformer_dir: str, tokenizer_dir: str, task: str, condition_video=None,
             class_id=None, num_samples: int = 1, seed: int = 0) -> np.ndarray:
    """uint8 [B, T, H, W, 3] samples of `task` (see Sampler.generate)."""
    from magvit.tokenizer.api import Tokenizer
    sampler = Sampler(transformer_dir, Tokenizer.load(tokenizer_dir))
    return sampler.generate(task, condition_video, class_id, num_samples, seed)


def contact_sheet(rows: list[list[np.ndarray]], gap: int = 2) -> np.ndarray:
    """uint8 image: each row a list of videos [T, H, W, 3] laid out as frame strips side by side."""
    strips = [[np.concatenate(list(v), axis=1) for v in row] for row in rows]
    height = max(s.shape[0] for row in strips for s in row)
    lines = []
    for row in strips:
        parts = []
        for s in row:
            parts += [np.pad(s, ((0, height - s.shape[0]), (0, 0), (0, 0))),
                      np.full((height, gap * 4, 3), 255, np.uint8)]
        lines.append(np.concatenate(parts[:-1], axis=1))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, gap), (0, width - line.shape[1]), (0, 0)), constant_values=255)
             for line in lines]
    return np.concatenate(lines, axis=0)


def write_outputs(out_dir: str, samples: np.ndarray, task, truth=None, fps: float = 8) -> list[str]:
    """Writes sample_NN.mp4 / .gif per sample and contact_sheet.png into `out_dir` (local or
    remote: the encoders write a local temporary folder, copied over with tf.io.gfile); returns
    the paths in `out_dir`."""
    import tempfile
    import tensorflow as tf
    from PIL import Image
    from magvit.video_io import write_video
    rows = []
    for i, video in enumerate(samples):
        row = []
        if truth is not None and task.has_condition:
            row.append(task.condition_video(truth[i:i + 1])[0])
        row.append(video)
        if truth is not None:
            row.append(truth[i])
        rows.append(row)
    names = []
    tf.io.gfile.makedirs(out_dir)
    with tempfile.TemporaryDirectory() as local:  # local-only
        for i, video in enumerate(samples):
            for ext in ("mp4", "gif"):
                names.append(f"sample_{i:02d}.{ext}")
                write_video(os.path.join(local, names[-1]), video, fps=fps)
        names.append("contact_sheet.png")
        Image.fromarray(contact_sheet(rows)).save(os.path.join(local, names[-1]))
        for name in names:
            tf.io.gfile.copy(os.path.join(local, name), os.path.join(out_dir, name), overwrite=True)
    return [os.path.join(out_dir, name) for name in names]


def _define_flags(fv) -> None:
    from absl import flags
    flags.DEFINE_enum("task", None, list(task_lib.TASK_NAMES), "Task to sample (a trained one).",
                      flag_values=fv)
    flags.DEFINE_string("tokenizer", None, "Tokenizer work directory.", flag_values=fv)
    flags.DEFINE_string("transformer", None, "Transformer work directory.", flag_values=fv)
    flags.DEFINE_string("input", None, "Condition clip (video file) for conditional tasks.",
                        flag_values=fv)
    flags.DEFINE_integer("class", None, "Class id for class-conditional tasks.", flag_values=fv)
    flags.DEFINE_integer("num_samples", 1, "Samples per input clip / class.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Sampling seed.", flag_values=fv)
    flags.DEFINE_float("fps", 8, "Frame rate of the written videos.", flag_values=fv)
    flags.DEFINE_string("out", None, "Output folder.", flag_values=fv)


def _main(f, _) -> None:
    from magvit.tokenizer.api import Tokenizer
    from magvit.video_io import read_video
    try:
        tokenizer = Tokenizer.load(f.tokenizer)
        sampler = Sampler(f.transformer, tokenizer)
        truth = None
        if f.input:
            frames = read_video(f.input)
            t = int(tokenizer.clip_shape[0])
            if len(frames) < t:
                raise ValueError(f"--input={f.input}: {len(frames)} frames, the tokenizer needs {t}")
            truth = frames[None, :t]
        samples = sampler.generate(f.task, truth, f["class"].value, f.num_samples, f.seed)
    except (ValueError, FileNotFoundError) as e:
        raise cli.UsageError(str(e)) from e
    if truth is not None:
        truth = np.repeat(truth, f.num_samples, axis=0)
    spec = task_lib.task_from_config(f.task, sampler.config.transformer)
    for path in write_outputs(f.out, samples, spec, truth, fps=f.fps):
        print(path)


PROGRAM = cli.Program("magvit.sample", __doc__, _define_flags, config_default=None,
                      required=("task", "tokenizer", "transformer", "out"))


def main(argv: list[str] | None = None) -> int:
    return PROGRAM.run(_main, argv)


if __name__ == "__main__":
    import sys
    sys.exit(main())
