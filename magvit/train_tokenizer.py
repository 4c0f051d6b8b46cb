"""Trains the 3D-VQ tokenizer on raw-clip TFRecords; resumes from the work directory.

    python -m magvit.train_tokenizer --config=tiny --data='out/clips/train-*' --workdir=runs/tok \
        [--eval_data='out/clips/test-*'] [--config.tokenizer.training.num_train_steps=1000]

Writes <workdir>/config.json, <workdir>/checkpoints/<step>/ (train state + data position),
TensorBoard scalars under <workdir>/train and <workdir>/eval, and <workdir>/eval_metrics.json
(PSNR, SSIM, codebook usage/perplexity of the EMA model on the held-out clips). With
`--config.tokenizer.loss.perceptual_weights=/path/resnet50_weights_tf_dim_ordering_tf_kernels.h5`
the generator also minimises the ResNet-50 perceptual loss (`train/perceptual_loss`).
`magvit.tokenizer.api.Tokenizer.load(workdir)` then gives the trained tokenizer.

The 2D image tokenizer (`--config=<setting>_image`) trains on random frames of the clips, or,
with `--config.tokenizer.training.image_folder=<folder>` (and no --data / --eval_data), on the
png / jpeg images under that folder (`magvit.image_data`: nested folders, gs:// too), evaluated
on the folder's held-out images (`tokenizer.training.image_eval_fraction`).
"""
import functools
import json
import os
import sys
import time

import jax
import ml_collections
import numpy as np
from absl import flags, logging

from magvit import (checkpoints, cli, data, distributed, host_memory, image_data, remote,
                    train_utils, xla_cpu)
from magvit.configs.flags import check_steps
from magvit.metrics import reconstruction
from magvit.tokenizer import inflation
from magvit.tokenizer import train_step as train_step_lib
from magvit.tokenizer.quantizers import codebook_size

EVAL_METRICS_FILE = "eval_metrics.json"
# What a resumed run must share with the checkpoints it restores (the state's shapes).
RESUME_KEYS = ("tokenizer.model", "tokenizer.discriminator", "tokenizer.clip_shape")


@functools.lru_cache(maxsize=4)
def _compiled(tokenizer_json: str, device_ids: tuple[int, ...]):
    """Models and jitted steps per (tokenizer config, devices), reused across `train` calls."""
    config = ml_collections.ConfigDict(json.loads(tokenizer_json))
    models = train_step_lib.Models(config)
    mesh = train_utils.make_mesh([d for d in jax.devices() if d.id in device_ids])
    steps = {gan: train_step_lib.jit_train_step(models, mesh, gan) for gan in (False, True)}
    reconstruct = xla_cpu.jit(functools.partial(train_step_lib.reconstruct, models))
    return models, mesh, steps, reconstruct


def _setup(tokenizer_config):
    return _compiled(tokenizer_config.to_json(sort_keys=True), tuple(d.id for d in jax.devices()))


def _initial_state(models, config, mesh):
    state = models.init(jax.random.PRNGKey(config.seed))
    source = config.tokenizer.model.init_from_2d
    if source:
        state = inflation.init_from_2d(source, state, config.tokenizer.model.inflation)
        state = state.replace(opt_state=models.optimizer.init(state.params),
                              disc_opt_state=models.optimizer.init(state.disc_params))
    return train_utils.replicate(state, mesh)


def _image_resolution(tokenizer_config) -> int:
    height, width = (int(s) for s in tokenizer_config.clip_shape[1:])
    if height != width:
        raise ValueError(f"tokenizer.clip_shape={tuple(tokenizer_config.clip_shape)}: "
                         "image_folder images are square crops, so H must equal W")
    return height


def _image_iterator(tokenizer_config, folder, *, train: bool, seed: int, position=None):
    """Training: the folder's training images, shuffled; else its held-out images, in order."""
    training = tokenizer_config.training
    return folder.iterator(_image_resolution(tokenizer_config), training.image_resize_filter,
                           training.batch_size, held_out=not train, train=train, seed=seed,
                           position=position)


def evaluate(tokenizer_config, params, pattern: str | None, max_batches: int = 0, seed: int = 0,
             examples: list | None = None, images: image_data.ImageFolder | None = None) -> dict:
    """Reconstruction metrics of `params` on the clips of `pattern` (one pass, or `max_batches`),
    or on the held-out images of `images`, beside the same metrics of a trivial baseline
    (`psnr_baseline` / `ssim_baseline`): each clip's mean frame held still, which a tokenizer that
    keeps motion must beat; for images, each image's mean colour.

    `examples`, a list, receives (clips, reconstructions) of the first batch (uint8)."""
    _, mesh, _, reconstruct = _setup(tokenizer_config)
    batch_size = tokenizer_config.training.batch_size
    if images is not None:
        clips = _image_iterator(tokenizer_config, images, train=False, seed=seed)
    else:
        clips = data.ResumableIterator(pattern, data.clip_parser(tokenizer_config.clip_shape),
                                       batch_size, seed=seed, train=False, flag="eval_data")
    params = train_utils.replicate(params, mesh)
    psnrs, ssims, ids_all, baseline_psnrs, baseline_ssims = [], [], [], [], []
    for i, batch in enumerate(clips):
        if max_batches and i >= max_batches:
            break
        frames = batch["frames"]
        n = len(frames)
        padded = np.concatenate([frames, np.repeat(frames[-1:], batch_size - n, 0)])
        recon, ids = reconstruct(params, train_utils.shard_batch(padded, mesh))
        recon, ids = np.asarray(recon)[:n], np.asarray(ids)[:n]
        if examples is not None and i == 0:
            examples.append((frames, recon))
        psnrs.append(reconstruction.psnr(frames, recon).mean(axis=1))
        ssims.append(reconstruction.ssim(frames, recon).mean(axis=1))
        still = reconstruction.mean_frame_baseline(frames)
        baseline_psnrs.append(reconstruction.psnr(frames, still).mean(axis=1))
        baseline_ssims.append(reconstruction.ssim(frames, still).mean(axis=1))
        ids_all.append(ids)
    if not psnrs:
        raise ValueError(f"--eval_data={pattern!r}: no clips" if images is None else
                         f"--{image_data.FLAG}={images.root!r}: no held-out image")
    ids = np.concatenate(ids_all)
    return {"psnr": float(np.mean(np.concatenate(psnrs))),
            "ssim": float(np.mean(np.concatenate(ssims))), "num_clips": int(len(ids)),
            "psnr_baseline": float(np.mean(np.concatenate(baseline_psnrs))),
            "ssim_baseline": float(np.mean(np.concatenate(baseline_ssims))),
            **reconstruction.codebook_usage(ids, codebook_size(tokenizer_config.model))}


def _image_folder(tcfg, train_pattern, eval_pattern) -> image_data.ImageFolder | None:
    """The image folder to train on (`training.image_folder`), checked before any work."""
    training = tcfg.training
    if not training.get("image_folder"):
        if not train_pattern:
            raise ValueError("--data is required (the clip TFRecords to train on), unless "
                             f"--{image_data.FLAG} names a folder of images")
        return None
    flag = f"--{image_data.FLAG}={training.image_folder!r}"
    if train_pattern or eval_pattern:
        raise ValueError(f"{flag} is the training data and its held-out images the eval data: "
                         "give no --data / --eval_data with it")
    if train_step_lib.spatial_dims(tcfg) != 2:
        raise ValueError(f"{flag} trains the 2D image tokenizer: use a `<setting>_image` config "
                         "(or --config.tokenizer.model.spatial_dims=2)")
    if int(training.frames_per_clip) != 1:
        raise ValueError(f"{flag}: each image is one frame, so tokenizer.training.frames_per_clip "
                         f"must be 1 (it is {training.frames_per_clip})")
    _image_resolution(tcfg)
    return image_data.ImageFolder.from_config(training)


def train(config: ml_collections.ConfigDict, train_pattern: str | None, workdir: str,
          eval_pattern: str | None = None) -> dict:
    """Trains (or resumes) to `tokenizer.training.num_train_steps`; returns the final metrics.

    With `tokenizer.training.image_folder` set, `train_pattern` and `eval_pattern` are None: the
    folder's images are the data."""
    tcfg = config.tokenizer
    training = tcfg.training
    check_steps(training.num_train_steps, "tokenizer.training.num_train_steps")
    images = _image_folder(tcfg, train_pattern, eval_pattern)
    if images is None:
        data.check_has_records(data.list_files(train_pattern), train_pattern)  # before any work
    models, mesh, steps, _ = _setup(tcfg)
    logging.info("perceptual loss: %s", (
        f"on, weight {tcfg.loss.perceptual_weight}, ResNet-50 {tcfg.loss.perceptual_weights}"
        if models.perceptual_variables is not None
        else "off (tokenizer.loss.perceptual_weights is empty)"))
    train_utils.check_batch_size(training.batch_size, mesh, "tokenizer.training.batch_size")
    checkpoints.check_resume(config, workdir, RESUME_KEYS)
    checkpointer = checkpoints.Checkpointer(workdir, training.max_checkpoints_to_keep,
                                            training.checkpoint_every_steps)
    state = _initial_state(models, config, mesh)
    meta = {}
    if checkpointer.latest_step() is not None:
        state, meta = checkpointer.restore(state)
    checkpoints.save_config(config, workdir)   # only once the restore worked
    start = int(jax.device_get(state.step))
    total = int(training.num_train_steps)
    if images is not None:
        clips = _image_iterator(tcfg, images, train=True, seed=config.seed,
                                position=meta.get("data_position"))
    else:
        clips = data.ResumableIterator(train_pattern, data.clip_parser(tcfg.clip_shape),
                                       training.batch_size, seed=config.seed,
                                       shuffle_buffer=training.shuffle_buffer,
                                       position=meta.get("data_position"))
    writer = train_utils.MetricWriter(os.path.join(workdir, "train"))
    bar = train_utils.progress_bar(total, start, desc="tokenizer")
    metrics, last_log, last_time = {}, start, time.time()
    for step in range(start, total):
        batch = train_utils.shard_batch({"frames": next(clips)["frames"]}, mesh)
        state, device_metrics = steps[step >= tcfg.loss.gan_start_step](state, batch)
        done = step + 1
        if done % training.log_every_steps == 0 or done == total:
            metrics = train_utils.to_scalars(device_metrics)
            now = time.time()
            metrics["steps_per_sec"] = (done - last_log) / max(now - last_time, 1e-9)
            last_log, last_time = done, now
            writer.write_scalars(done, metrics)
            bar.set_postfix(loss=f"{metrics['generator_loss']:.4f}", psnr=f"{metrics['psnr']:.2f}")
        checkpointer.save(done, state, {"data_position": clips.position.to_dict()},
                          force=done == total)
        bar.update(1)
    bar.close()
    checkpointer.close()
    writer.close()
    result = {"step": int(jax.device_get(state.step)),
              **{f"train_{k}": v for k, v in metrics.items()}}
    if eval_pattern or (images is not None and images.eval_files):
        shown = []
        eval_metrics = evaluate(tcfg, state.ema_params, eval_pattern, training.eval_batches,
                                config.seed, examples=shown, images=images)
        eval_writer = train_utils.MetricWriter(os.path.join(workdir, "eval"))
        eval_writer.write_scalars(result["step"], eval_metrics)
        # clip (top) over its reconstruction (bottom), frames left to right
        eval_writer.write_images(result["step"], {
            "reconstructions": train_utils.video_strips(*shown[0])})
        eval_writer.close()
        if jax.process_index() == 0:
            remote.write_text(os.path.join(workdir, EVAL_METRICS_FILE),
                              json.dumps({"step": result["step"], **eval_metrics}, indent=2))
        result.update({f"eval_{k}": v for k, v in eval_metrics.items()})
    return result


def _define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("data", None, "Glob(s) of raw-clip TFRecords to train on (comma-separated)."
                        f" Required unless --{image_data.FLAG} names a folder of images.",
                        flag_values=fv)
    flags.DEFINE_string("workdir", None, "Where checkpoints, config.json and TensorBoard logs go.",
                        flag_values=fv)
    flags.DEFINE_string("eval_data", None, "Glob(s) of held-out clip TFRecords for final metrics.",
                        flag_values=fv)


PROGRAM = cli.Program("magvit.train_tokenizer", __doc__, _define_flags,
                      required=("workdir",))


def _main(fv: flags.FlagValues, _) -> None:
    if not fv.data and not fv.config.tokenizer.training.image_folder:
        raise cli.UsageError(f"--data is required (the clip TFRecords to train on) unless "
                             f"--{image_data.FLAG} names a folder of images:\n  --data: "
                             f"{fv['data'].help}")
    host_memory.dispatch_on_calling_thread()   # before JAX starts: large CPU steps keep memory
    distributed.initialize()   # multi-host jobs (Vertex AI, SLURM, TPU pods); no-op alone
    result = train(fv.config, fv.data, fv.workdir, fv.eval_data)
    print(json.dumps(result, indent=2, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    return PROGRAM.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
