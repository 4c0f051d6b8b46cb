"""Evaluator: samples every task the transformer was trained on, FVD against real clips, a blessing.

For each task, `eval.num_samples` samples are drawn per sample set (`eval.repeats` sets) with the
trained transformer and tokenizer (`magvit.sample.Sampler`), conditioned on the real clips of the
evaluation split (`eval.split`, default `test`) taken in file order and cycled through; a
class-conditional task uses each clip's label as its class. The generated clips are written as clip
TFRecords and scored by the evaluation Beam job (`pipelines.evaluate.run_evaluate`): FVD against the
whole split and, for tasks with a condition, PSNR / SSIM of the generated content only (the pixels
outside the task's known region) of the first sample of each clip against that clip (generated
records keep its `video_id@clip_start` so the job pairs them). Beside each such task stands the
trivial baseline, scored by the same job: the condition-padded video (`Task.condition_video`: the
last condition frame repeated for frame prediction, the condition blend for interpolation, the
known box's edges or zeros for out- / inpainting), so a reader sees whether the model beats doing
nothing. The same job scores the tokenizer's own reconstructions of the split's first
`eval.num_samples` clips (the paper's reconstruction FVD, beside each clip's mean frame held still):
samples decoded by this tokenizer carry its errors too, so their FVD is rarely far below it.

Layout of the ModelEvaluation artifact:
  metrics.json                     per task, the mean and worst FVD over tasks, the blessing
  <task>/metrics.json              the task's FVD (mean over its sample sets), PSNR / SSIM
  <task>/set_<k>/samples.tfrecord  sample set k (clip schema), with run_evaluate's metrics.json and
                                   dead_letter.jsonl beside it
  <task>/baseline/samples.tfrecord the condition-padded videos of the same clips, scored alike by
                                   set 0's job (its metrics.json `baseline`)
  reconstruction/samples.tfrecord  the tokenizer's reconstructions, with run_evaluate's
                                   metrics.json beside them (summed up in metrics.json's
                                   `reconstruction`); baseline/samples.tfrecord: each clip's mean
                                   frame held still
  gallery/<task>/                  the first `eval.gallery_samples` samples: sample_NN.mp4 / .gif and
                                   contact_sheet.png (condition | sample | truth)
  reference_stats.npz              the split's I3D statistics, computed once for all tasks (unless
                                   `eval.reference_stats` names another cache)
The ModelBlessing is blessed (custom property `blessed` = 1 and a BLESSED file, as TFX's own
Evaluator writes) when every task's FVD is below `eval.fvd_threshold`. FVD from a random I3D
(`eval.allow_random_i3d`, tests only) is marked as a smoke-test number everywhere; every
metrics.json names the I3D weights, their content id and the FVD protocol.
"""
import itertools
import json
import os

import ml_collections
import numpy as np
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components import artifacts, config_param, progress
from magvit import data, sample, train_utils
from magvit.configs.evaluation import check_counts, real_split
from magvit.metrics import reconstruction
from magvit.metrics.fvd import RANDOM_WARNING
from magvit.tokenizer.api import Tokenizer
from magvit.transformer import tasks as task_lib
from pipelines.evaluate import run_evaluate
from tfrecords_schemas import clip as clip_schema

SECTIONS = ("eval",)
METRICS_FILE = "metrics.json"
GALLERY = "gallery"
BLESSED_FILE, NOT_BLESSED_FILE = "BLESSED", "NOT_BLESSED"
# Entries of a sample set's metrics that describe the whole task (identical across its sets).
_TASK_FIELDS = ("num_real", "num_generated", "num_frames", "protocol", "protocol_detail",
                "i3d_weights", "i3d_weights_name", "i3d_weights_path", "random_i3d", "warning",
                "real_pattern", "lpips_status", "paired_scores")
PROVENANCE = ("i3d_weights_name", "i3d_weights", "protocol")
BASELINE = "baseline"
RECONSTRUCTION = "reconstruction"
RECONSTRUCTION_LINE = "tokenizer reconstructions"


def condition_clips(pattern: str, clip_shape, count: int):
    """(cycle, clip) for `count` parsed real clips (numpy values), in file order, cycling."""
    records = tf.data.TFRecordDataset(data.list_files(pattern, "config.eval.split")).map(
        lambda r: clip_schema.parse_clip(r, shape=clip_shape))
    produced = 0
    for cycle in itertools.count():
        iterator = records.as_numpy_iterator()
        while produced < count:
            try:
                clip = next(iterator)
            except StopIteration:
                break
            except tf.errors.OpError as e:
                raise ValueError(f"real clips {pattern} (config.eval.split): {e.message}") from e
            yield cycle, clip
            produced += 1
        if produced == count:
            return
        if produced == 0:
            raise ValueError(f"real clips {pattern} (config.eval.split): no clip to condition on")


def _in_batches(items, size: int):
    items = iter(items)
    while batch := list(itertools.islice(items, size)):
        yield batch


def sample_batch(sampler: sample.Sampler, task: task_lib.Task, clips: list[dict], batch_size: int,
                 seed: int) -> np.ndarray:
    """uint8 [len(clips), T, H, W, 3]: one sample per clip (padded to a full batch: one trace)."""
    frames = np.stack([c["frames"] for c in clips])
    labels = np.array([int(c["label"]) for c in clips])
    if task.class_conditional and (labels < 0).any():
        raise ValueError(f"task {task.name} needs labelled clips; the evaluation split has "
                         f"unlabelled ones (label -1)")
    pad = batch_size - len(clips)
    frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
    labels = np.concatenate([labels, np.repeat(labels[-1:], pad)])
    samples = sampler.generate(
        task.name, frames if task.has_condition else None,
        class_id=labels if task.class_conditional else None,  # one class per example
        num_samples=1 if task.has_condition else batch_size, seed=seed)
    return samples[:len(clips)]


def generated_record(task: task_lib.Task, frames: np.ndarray, clip: dict, cycle: int) -> bytes:
    """The sample as a clip record; the first sample of a condition clip keeps that clip's key."""
    video_id = clip["video_id"].decode()
    if not (task.has_condition and cycle == 0):
        video_id = f"{task.name}/{cycle}/{video_id}"
    return _record(frames, clip, video_id, f"generated/{task.name}")


def _record(frames: np.ndarray, clip: dict, video_id: str, dataset: str) -> bytes:
    """`frames` as a clip record with `clip`'s fps, label and start, under `video_id`."""
    return clip_schema.build_clip(clip_schema.Clip(
        frames=frames, fps=float(clip["fps"]), label=int(clip["label"]),
        label_name=clip["label_name"].decode(), video_id=video_id,
        clip_start=int(clip["clip_start"]), dataset=dataset)).SerializeToString(
        deterministic=True)


def _seed(seed: int, *path: int) -> int:
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0])


def _sample_set(sampler, task, task_index: int, set_index: int, real_pattern: str, eval_config,
                out_dir: str, seed: int, gallery_dir: str | None) -> str:
    """Writes one set of samples of `task` to `<out_dir>/samples.tfrecord`; returns its path."""
    tf.io.gfile.makedirs(out_dir)
    path = os.path.join(out_dir, "samples.tfrecord")
    num, size = int(eval_config.num_samples), int(eval_config.batch_size)
    shown, truth, fps = [], [], 8.0
    bar = train_utils.progress_bar(-(-num // size), desc=f"sampling {task.name} set {set_index}")
    with tf.io.TFRecordWriter(path) as writer, bar:
        clips = condition_clips(real_pattern, sampler.tokenizer.clip_shape, num)
        for b, batch in enumerate(_in_batches(clips, size)):
            samples = sample_batch(sampler, task, [c for _, c in batch], size,
                                   _seed(seed, task_index, set_index, b))
            for (cycle, clip), frames in zip(batch, samples):
                writer.write(generated_record(task, frames, clip, cycle))
                if gallery_dir and len(shown) < eval_config.gallery_samples:
                    shown.append(frames)
                    truth.append(clip["frames"])
                    fps = float(clip["fps"])
            bar.update(1)
    if gallery_dir and shown:
        _write_gallery(gallery_dir, np.stack(shown), task,
                       np.stack(truth) if task.has_condition else None, fps)
    return path


def _baseline_set(task, real_pattern: str, clip_shape, eval_config, out_dir: str) -> str:
    """Writes the condition-padded videos of the clips a sample set conditions on (the trivial
    baseline: what doing nothing scores) to `<out_dir>/samples.tfrecord`; returns its path."""
    tf.io.gfile.makedirs(out_dir)
    path = os.path.join(out_dir, "samples.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for cycle, clip in condition_clips(real_pattern, clip_shape, int(eval_config.num_samples)):
            padded = task.condition_video(clip["frames"][None])[0]
            writer.write(generated_record(task, padded, clip, cycle))
    return path


def reconstruction_sets(tokenizer: Tokenizer, real_pattern: str, eval_config, out_dir: str
                        ) -> tuple[str, str]:
    """Writes the tokenizer's reconstructions (encode, decode) of the split's first
    `eval.num_samples` clips, each clip once and keyed as that clip, to
    `<out_dir>/samples.tfrecord`, and their trivial baseline, each clip's mean frame held still,
    to `<out_dir>/baseline/samples.tfrecord`; returns both paths."""
    paths = (os.path.join(out_dir, "samples.tfrecord"),
             os.path.join(out_dir, BASELINE, "samples.tfrecord"))
    tf.io.gfile.makedirs(os.path.dirname(paths[1]))
    size = int(eval_config.batch_size)
    # The first pass only: stop reading where condition_clips would start the split again.
    clips = (clip for _, clip in itertools.takewhile(
        lambda item: item[0] == 0,
        condition_clips(real_pattern, tokenizer.clip_shape, int(eval_config.num_samples))))
    with tf.io.TFRecordWriter(paths[0]) as recon_writer, \
            tf.io.TFRecordWriter(paths[1]) as still_writer:
        for batch in _in_batches(clips, size):
            frames = np.stack([c["frames"] for c in batch])
            padded = np.concatenate([frames, np.repeat(frames[-1:], size - len(batch), 0)])
            recon = tokenizer.decode(tokenizer.encode(padded))[:len(batch)]  # one trace
            still = reconstruction.mean_frame_baseline(frames)
            for clip, r, m in zip(batch, recon, still):
                key = clip["video_id"].decode()
                recon_writer.write(_record(r, clip, key, RECONSTRUCTION))
                still_writer.write(_record(m, clip, key, f"{RECONSTRUCTION}/{BASELINE}"))
    return paths


def _score_reconstructions(tokenizer, real_pattern, eval_config, out_dir, beam_args) -> dict:
    """FVD, PSNR and SSIM of the tokenizer's reconstructions of the split's clips (the paper's
    reconstruction FVD: what no sample decoded by this tokenizer can beat by much), beside each
    clip's mean frame held still."""
    recon, still = reconstruction_sets(tokenizer, real_pattern, eval_config, out_dir)
    scored = run_evaluate(real_pattern, recon, eval_config, out_dir, beam_args=list(beam_args),
                          baseline_pattern=still)
    out = task_metrics([scored], [out_dir], scored.get("baseline"))
    out["baseline"] = "each clip's mean frame held still"
    return out


def _write_gallery(gallery_dir: str, samples, task, truth, fps: float) -> None:
    """`magvit.sample.write_outputs` into `gallery_dir`; the contact sheet also as a TensorBoard
    image (`<out_dir>/tensorboard`, tag `gallery/<task>`)."""
    _write_gallery_summary(gallery_dir, samples, task, truth)
    sample.write_outputs(gallery_dir, samples, task, truth, fps=fps)


def _write_gallery_summary(gallery_dir: str, samples, task, truth) -> None:
    rows = [[video] if truth is None else
            [task.condition_video(truth[i:i + 1])[0], video, truth[i]]
            for i, video in enumerate(samples)]  # as the gallery's contact sheet
    logdir = os.path.join(os.path.dirname(os.path.dirname(gallery_dir)), "tensorboard")
    writer = train_utils.MetricWriter(logdir)
    writer.write_images(0, {f"gallery/{task.name}": sample.contact_sheet(rows)})
    writer.close()


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def task_metrics(sets: list[dict], set_dirs: list[str], baseline: dict | None = None) -> dict:
    """One task's metrics from the metrics of its sample sets: FVD mean (and spread) over the sets,
    PSNR / SSIM / LPIPS mean over the sets that had pairs; with the `baseline` set's metrics,
    `<metric>_baseline` for FVD, PSNR and SSIM beside them (None without a baseline)."""
    fvds = [float(m["fvd"]) for m in sets]
    paired = [m for m in sets if m.get("num_pairs")]
    out = {k: sets[0][k] for k in _TASK_FIELDS if k in sets[0]}
    out.update(fvd=float(np.mean(fvds)), fvd_std=float(np.std(fvds)), fvd_per_set=fvds,
               num_sets=len(sets), psnr=_mean(m["psnr"] for m in paired),
               ssim=_mean(m["ssim"] for m in paired), lpips=_mean(m.get("lpips") for m in paired),
               num_pairs=sum(m["num_pairs"] for m in paired),
               sets=set_dirs)
    for key in ("fvd", "psnr", "ssim"):
        out[f"{key}_baseline"] = baseline.get(key) if baseline else None
    out["baseline"] = ("condition-padded video (Task.condition_video) of the same clips"
                       if baseline else "none: the task has no condition")
    return out


def task_line(task: str, m: dict) -> str:
    """One line per task for the summary: FVD and generated-content PSNR next to the baseline."""
    def pair(key, unit=""):
        value, base = m.get(key), m.get(f"{key}_baseline")
        text = "n/a" if value is None else f"{value:.4g}{unit}"
        return text + ("" if base is None else f" (baseline {base:.4g}{unit})")
    line = f"{task}: FVD {pair('fvd')}"
    if m.get("psnr") is not None:
        line += f", PSNR of generated content {pair('psnr', ' dB')}, SSIM {pair('ssim')}"
    return line


def overall_metrics(per_task: dict[str, dict], fvd_threshold: float) -> dict:
    """Mean and worst FVD over the tasks and the blessing: every task's FVD below the threshold."""
    fvds = {task: m["fvd"] for task, m in per_task.items()}
    worst = max(fvds.values())
    random_i3d = any(m.get("random_i3d") for m in per_task.values())
    blessed = bool(worst < fvd_threshold)
    verdict = (f"{'blessed' if blessed else 'NOT blessed'}: worst task FVD {worst:.4g} "
               f"{'<' if blessed else '>='} eval.fvd_threshold {fvd_threshold:.4g}")
    if random_i3d:
        verdict += " (random-I3D FVD: smoke test only)"
    first = next(iter(per_task.values()))
    out = {"fvd": float(np.mean(list(fvds.values()))), "fvd_max": float(worst),
           "fvd_threshold": float(fvd_threshold), "blessed": blessed, "verdict": verdict,
           "random_i3d": random_i3d, "tasks": per_task,
           **{k: first[k] for k in PROVENANCE if k in first}}
    if random_i3d:
        out["warning"] = RANDOM_WARNING
    return out


def provenance_line(metrics: dict) -> str:
    """The I3D weights (name and content id) and FVD protocol every FVD here was computed with."""
    return (f"{metrics.get('i3d_weights_name')} (id {metrics.get('i3d_weights')}), FVD protocol "
            f"{metrics.get('protocol')}")


def evaluate(sampler: sample.Sampler, real_pattern: str, eval_config, out_dir: str,
             beam_args: list[str] = (), seed: int = 0) -> dict:
    """Samples every task the sampler's transformer was trained on and scores it; returns (and
    writes to `<out_dir>/metrics.json`) the overall metrics."""
    eval_config = ml_collections.ConfigDict(eval_config.to_dict())
    if not eval_config.reference_stats:
        eval_config.reference_stats = os.path.join(out_dir, "reference_stats.npz")
    check_counts(eval_config)
    per_task = {}
    for t, task in enumerate(task_lib.get_tasks(sampler.config.transformer)):
        task_dir = os.path.join(out_dir, task.name)
        sets, set_dirs = [], []
        for k in range(int(eval_config.repeats)):
            set_dir = os.path.join(task_dir, f"set_{k}")
            gallery = os.path.join(out_dir, GALLERY, task.name) if k == 0 else None
            samples = _sample_set(sampler, task, t, k, real_pattern, eval_config, set_dir, seed,
                                  gallery)
            # The trivial baseline is scored in the first set's job (same real statistics).
            baseline = (_baseline_set(task, real_pattern, sampler.tokenizer.clip_shape,
                                      eval_config, os.path.join(task_dir, BASELINE))
                        if k == 0 and task.has_condition else "")
            sets.append(run_evaluate(real_pattern, samples, eval_config, set_dir,
                                     beam_args=list(beam_args), task=task.name,
                                     condition_frames=sampler.config.transformer.condition_frames,
                                     baseline_pattern=baseline))
            set_dirs.append(set_dir)
        baseline = sets[0].get("baseline")
        per_task[task.name] = task_metrics(sets, set_dirs, baseline)
        _write_json(os.path.join(task_dir, METRICS_FILE), per_task[task.name])
    metrics = overall_metrics(per_task, float(eval_config.fvd_threshold))
    metrics[RECONSTRUCTION] = _score_reconstructions(
        sampler.tokenizer, real_pattern, eval_config, os.path.join(out_dir, RECONSTRUCTION),
        beam_args)
    metrics.update(split_pattern=real_pattern, num_samples=int(eval_config.num_samples),
                   repeats=int(eval_config.repeats), transformer_step=sampler.step,
                   gallery=os.path.join(out_dir, GALLERY))
    _write_json(os.path.join(out_dir, METRICS_FILE), metrics)
    return metrics


def _write_json(path: str, value: dict) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(value, indent=2, sort_keys=True))


@component
def Evaluator(clips: InputArtifact[standard_artifacts.Examples],
              tokenizer: InputArtifact[standard_artifacts.Model],
              transformer: InputArtifact[standard_artifacts.Model],
              evaluation: OutputArtifact[standard_artifacts.ModelEvaluation],
              blessing: OutputArtifact[standard_artifacts.ModelBlessing],
              config: Parameter[str], beam_args: Parameter[str]):
    """Samples, scores and blesses `transformer`; `config` holds the eval section."""
    run_config = config_param.loads(config)
    eval_config = run_config.eval
    split = real_split(eval_config.split, artifacts.split_names(clips))
    sampler = sample.Sampler(transformer.uri, Tokenizer.load(tokenizer.uri))
    tasks = ", ".join(sampler.config.transformer.tasks)
    with progress.stage("Evaluator", f"sampling {tasks} and scoring FVD against {split} clips"):
        metrics = evaluate(sampler, artifacts.split_pattern(clips, split), eval_config,
                           evaluation.uri, config_param.loads_list(beam_args), run_config.seed)
    artifacts.set_numbers(evaluation, {
        "fvd": metrics["fvd"], "fvd_max": metrics["fvd_max"],
        **{task: {k: m[k] for k in ("fvd", "psnr", "ssim", "fvd_baseline", "psnr_baseline",
                                    "ssim_baseline")}
           for task, m in [*metrics["tasks"].items(), (RECONSTRUCTION, metrics[RECONSTRUCTION])]}})
    evaluation.set_string_custom_property("gallery", metrics["gallery"])
    evaluation.set_string_custom_property("i3d", provenance_line(metrics))
    evaluation.set_string_custom_property(
        "tasks", "\n".join([task_line(t, m) for t, m in metrics["tasks"].items()]
                           + [task_line(RECONSTRUCTION_LINE, metrics[RECONSTRUCTION])]))
    if metrics["random_i3d"]:
        evaluation.set_string_custom_property("warning", metrics["warning"])
    blessing.set_int_custom_property("blessed", int(metrics["blessed"]))
    blessing.set_string_custom_property("verdict", metrics["verdict"])
    blessing.set_string_custom_property("current_model", transformer.uri)
    with tf.io.gfile.GFile(os.path.join(
            blessing.uri, BLESSED_FILE if metrics["blessed"] else NOT_BLESSED_FILE), "w") as f:
        f.write(metrics["verdict"] + "\n")
