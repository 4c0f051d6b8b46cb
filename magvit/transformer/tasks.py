"""MAGVIT's tasks: the condition region of each, its pixel-space condition video, and the vocabulary.

A task says which part of a clip is known. The same region function gives both the known pixels
(on the clip's [T, H, W] grid) and the interior condition tokens (on the token grid [t, h, w]):
regions are defined in fractions of the grid, as in the official code, and a frame count of `n`
condition frames becomes ceil(n * t / T) token frames (1 of 16 frames -> 1 of 4 token frames).

The condition video keeps the known pixels and pads the rest (shared/research/magvit_spec.md):
  edge         frame prediction repeats the last known frame; outpainting extends the known box
  interpolate  frame interpolation blends linearly between the known first and last frames
  constant     inpainting and dynamic outpainting fill the unknown pixels with 0

Adding a task is adding one entry to `REGISTRY` and its task family (task token) to `_FAMILIES`.
"""
import dataclasses
import math
from typing import Callable

import numpy as np

Shape = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    region: Callable[[Shape, int], np.ndarray] | None  # (grid shape, clip frames) -> bool [t,h,w]
    padding: str = "none"                               # edge | interpolate | constant | none
    class_conditional: bool = False
    family: str = "full_generation"                     # the task token (see _FAMILIES)

    @property
    def has_condition(self) -> bool:
        return self.region is not None

    def known_mask(self, shape: Shape, clip_frames: int) -> np.ndarray:
        """bool [T', H', W']: the known part of a grid of `shape` (pixels or tokens)."""
        if self.region is None:
            return np.zeros(shape, bool)
        return self.region(tuple(shape), clip_frames)

    def condition_video(self, video: np.ndarray) -> np.ndarray:
        """uint8 [B, T, H, W, 3] -> the condition video: known pixels kept, the rest padded."""
        video = np.asarray(video)
        if video.ndim != 5 or video.shape[-1] != 3:
            raise ValueError(f"task {self.name}: expected a video batch [B, T, H, W, 3], "
                             f"got {list(video.shape)}")
        if self.region is None:
            raise ValueError(f"task {self.name} has no condition video")
        mask = self.known_mask(video.shape[1:4], video.shape[1])
        return _PADDINGS[self.padding](video, mask)


# ---------------------------------------------------------------------------------------------
# Regions: functions of the grid shape (fractions of it), so pixels and tokens share them.

def _frames(n: int, shape: Shape, clip_frames: int) -> int:
    """Frames of a grid of `shape` covered by the first `n` of `clip_frames` clip frames."""
    return min(shape[0], math.ceil(n * shape[0] / clip_frames))


def first_frames(num_frames: int, latent_frames: int = 0):
    """The first `num_frames` clip frames; on a token grid (fewer frames than the clip) the first
    `latent_frames` token frames when given, else ceil(num_frames * t / T)."""
    def region(shape, clip_frames):
        mask = np.zeros(shape, bool)
        if latent_frames and shape[0] != clip_frames:
            mask[:min(latent_frames, shape[0])] = True
        else:
            mask[:_frames(num_frames, shape, clip_frames)] = True
        return mask
    return region


def end_frames(num_frames: int):
    def region(shape, clip_frames):
        n = _frames(num_frames, shape, clip_frames)
        mask = np.zeros(shape, bool)
        mask[:n] = True
        mask[shape[0] - n:] = True
        return mask
    return region


def box(rows: bool, cols: bool):
    """The central half of the rows and/or columns (official `rectangle_*`: [x/4, 3x/4))."""
    def region(shape, clip_frames):
        del clip_frames
        t, h, w = shape
        mask = np.zeros(shape, bool)
        r = slice(h // 4, h * 3 // 4) if rows else slice(None)
        c = slice(w // 4, w * 3 // 4) if cols else slice(None)
        mask[:, r, c] = True
        return mask
    return region


def _moving_columns(shape) -> np.ndarray:
    """bool [t, 1, w]: a half-width vertical strip moving from the left edge to the right."""
    t, _, w = shape
    start = np.round(np.linspace(0, w // 2, t)).astype(int)
    cols = np.arange(w)
    return ((cols[None] >= start[:, None]) & (cols[None] < start[:, None] + w // 2))[:, None, :]


def dynamic_vertical(shape, clip_frames):
    del clip_frames
    return np.broadcast_to(_moving_columns(shape), shape).copy()


def dynamic_central_hole(shape, clip_frames):
    """Known everywhere except the central rows of a moving half-width strip."""
    del clip_frames
    _, h, _ = shape
    rows = np.zeros((1, h, 1), bool)
    rows[:, h // 4:h * 3 // 4] = True
    return ~(_moving_columns(shape) & rows)


def invert(region):
    def inverted(shape, clip_frames):
        return ~region(shape, clip_frames)
    return inverted


# ---------------------------------------------------------------------------------------------
# Paddings: (uint8 video [B, T, H, W, 3], known mask [T, H, W]) -> uint8 condition video.

def _pad_edge(video, mask):
    """Crops the known box and extends its edge pixels over the rest."""
    idx = [np.flatnonzero(mask.any(axis=tuple(j for j in range(3) if j != i))) for i in range(3)]
    lo = [int(i[0]) for i in idx]
    hi = [int(i[-1]) + 1 for i in idx]
    if not mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].all():
        raise ValueError("edge padding needs a box-shaped known region")
    known = video[:, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    pad = [(0, 0)] + [(lo[i], mask.shape[i] - hi[i]) for i in range(3)] + [(0, 0)]
    return np.pad(known, pad, mode="edge")


def _pad_interpolate(video, mask):
    """Known first and last frames; the frames between blend linearly from one to the other."""
    known = mask.any(axis=(1, 2))
    n = int(np.argmin(known))                      # first unknown frame
    end = len(known) - int(np.argmin(known[::-1]))  # first known frame of the end
    start_frame = video[:, n - 1:n].astype(np.float32)
    end_frame = video[:, end:end + 1].astype(np.float32)
    fractions = (np.arange(1, end - n + 1) / (end - n + 1))[None, :, None, None, None]
    out = video.copy()
    out[:, n:end] = np.round(start_frame + (end_frame - start_frame) * fractions).astype(np.uint8)
    return out


def _pad_constant(video, mask):
    return np.where(mask[None, ..., None], video, 0).astype(np.uint8)


_PADDINGS = {"edge": _pad_edge, "interpolate": _pad_interpolate, "constant": _pad_constant}


# ---------------------------------------------------------------------------------------------
# The registry: task name -> Task, given the number of condition frames of frame prediction.

def _task(name, region, padding="none", class_conditional=False):
    return Task(name, region, padding, class_conditional, family=_FAMILIES[name])


# The official task token of each task (`task_registry.py`): one per task family; every out- and
# inpainting task shares the outpainting token, class-conditional generation has the
# full-generation token.
_FAMILIES = {
    "frame_prediction": "frame_prediction", "frame_interpolation": "frame_interpolation",
    "outpainting_h": "outpainting", "outpainting_v": "outpainting", "outpainting_c": "outpainting",
    "outpainting_dv": "outpainting", "inpainting_c": "outpainting", "inpainting_dv": "outpainting",
    "class_conditional": "full_generation",
    "class_conditional_frame_prediction": "frame_prediction",
}

# name -> (condition frames n, latent condition frames m) -> Task
REGISTRY: dict[str, Callable[[int, int], Task]] = {
    "frame_prediction": lambda n, m: _task("frame_prediction", first_frames(n, m), "edge"),
    "frame_interpolation": lambda n, m: _task("frame_interpolation", end_frames(1), "interpolate"),
    "outpainting_h": lambda n, m: _task("outpainting_h", box(rows=True, cols=False), "edge"),
    "outpainting_v": lambda n, m: _task("outpainting_v", box(rows=False, cols=True), "edge"),
    "outpainting_c": lambda n, m: _task("outpainting_c", box(rows=True, cols=True), "edge"),
    "outpainting_dv": lambda n, m: _task("outpainting_dv", dynamic_vertical, "constant"),
    "inpainting_c": lambda n, m: _task("inpainting_c", invert(box(rows=True, cols=True)),
                                       "constant"),
    "inpainting_dv": lambda n, m: _task("inpainting_dv", dynamic_central_hole, "constant"),
    "class_conditional": lambda n, m: _task("class_conditional", None, class_conditional=True),
    "class_conditional_frame_prediction": lambda n, m: _task(
        "class_conditional_frame_prediction", first_frames(n, m), "edge", class_conditional=True),
}
TASK_NAMES = tuple(REGISTRY)


def get_task(name: str, condition_frames: int = 1, condition_latent_frames: int = 0) -> Task:
    """`condition_latent_frames` 0: ceil(n * t / T) token frames for n condition frames."""
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASK_NAMES)}")
    if condition_latent_frames < 0:
        raise ValueError(f"transformer.condition_latent_frames={condition_latent_frames}: must be "
                         ">= 0 (0 = derived from condition_frames)")
    return REGISTRY[name](condition_frames, condition_latent_frames)


def task_from_config(name: str, transformer_config) -> Task:
    return get_task(name, transformer_config.condition_frames,
                    transformer_config.get("condition_latent_frames", 0))


def get_tasks(transformer_config) -> list[Task]:
    """The tasks a transformer config trains on, in config order."""
    return [task_from_config(name, transformer_config) for name in transformer_config.tasks]


# ---------------------------------------------------------------------------------------------
# The vocabulary (official layout, `maskgvt_train_lib.get_bert_model`): codebook ids [0, K), class
# tokens [K, K + C), the "no class" token K + C, then the special tokens: 1 slot ([MASK]) for a
# single-task model, 16 for a multi-task one. Special tokens count from the end of the
# vocabulary: [MASK] = size - 1, task tokens size - 3 (full generation), size - 4 (frame
# prediction), size - 5 (frame interpolation), size - 6 (outpainting, shared by inpainting).
# A single-task model has no task token: its prefix is the class token alone.

SPECIAL_TOKENS = {"mask": -1, "sep": -2, "full_generation": -3, "frame_prediction": -4,
                  "frame_interpolation": -5, "outpainting": -6, "inpainting": -7}
MULTI_TASK_SPECIAL_SLOTS = 16


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    codebook_size: int
    num_classes: int
    tasks: tuple[str, ...]

    @property
    def multi_task(self) -> bool:
        return len(self.tasks) > 1

    @property
    def no_class_id(self) -> int:
        return self.codebook_size + self.num_classes

    @property
    def size(self) -> int:
        return self.no_class_id + 1 + (MULTI_TASK_SPECIAL_SLOTS if self.multi_task else 1)

    @property
    def mask_id(self) -> int:
        return self.size + SPECIAL_TOKENS["mask"]

    @property
    def prefix_length(self) -> int:
        """Task token (multi-task only) and class token."""
        return 2 if self.multi_task else 1

    def task_id(self, task: str) -> int:
        """The task token of `task` (its family's); an error if the model was not trained on it."""
        if task not in self.tasks:
            raise ValueError(f"the model was not trained on task {task!r}; it knows "
                             f"{', '.join(self.tasks)}")
        if not self.multi_task:
            raise ValueError(f"a single-task model ({task}) has no task token")
        return self.size + SPECIAL_TOKENS[_FAMILIES[task]]

    def prefix(self, task: Task, labels: np.ndarray, unconditional: bool = False) -> np.ndarray:
        """int32 [B, prefix_length]: [task token,] class token (or "no class") of each example.

        `unconditional`: the classifier-free-guidance prefix: "no class", and (official rule) the
        full-generation task token when the model was trained on full generation."""
        if task.name not in self.tasks:
            raise ValueError(f"the model was not trained on task {task.name!r}; it knows "
                             f"{', '.join(self.tasks)}")
        labels = np.asarray(labels).reshape(-1)
        if task.class_conditional and not unconditional:
            bad = labels[(labels < 0) | (labels >= self.num_classes)]
            if bad.size:
                raise ValueError(f"class {int(bad[0])} out of range [0, {self.num_classes})")
            classes = self.codebook_size + labels
        else:
            classes = np.full_like(labels, self.no_class_id)
        columns = [classes]
        if self.multi_task:
            token = self.task_id(task.name)
            if unconditional and any(_FAMILIES[t] == "full_generation" for t in self.tasks):
                token = self.size + SPECIAL_TOKENS["full_generation"]
            columns.insert(0, np.full_like(labels, token))
        return np.stack(columns, axis=1).astype(np.int32)
