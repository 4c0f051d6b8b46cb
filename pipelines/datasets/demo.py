"""The embedded demo dataset: labelled videos of moving shapes, generated, no download.

Four classes, each with its own motion, so a class-conditional model has something to learn:
  bounce  a disc bouncing off the walls at constant speed
  orbit   a square circling the centre
  slide   a bar sliding left to right and wrapping around
  pulse   a disc in place, growing and shrinking
The background is one dark grey and each class has its own saturated colour (PALETTE, in CLASSES
order), so a tiny tokenizer's few hundred steps go to shapes and motion, not to telling colours
apart (a 300-step run of an earlier tiny tokenizer: 23.7 dB, against 21.2 with a colour drawn per
video). What varies per video is the motion: start positions, directions, speeds and phases come
from a seeded RandomState per video, so the same seed gives the same pixels (and, encoded, the
same MP4 bytes). Videos are written as ordinary H.264 MP4 files in the folder layout
(`<root>/<class>/<class>_NNN.mp4`), so the demo runs through the real decode path.
"""
import os

import numpy as np

from magvit.video_io import write_video
from pipelines.datasets import common, folder

CLASSES = ("bounce", "orbit", "slide", "pulse")
BACKGROUND = (24, 24, 32)
PALETTE = ((250, 70, 70), (70, 230, 90), (80, 140, 255), (250, 210, 60))


def _disc(yy, xx, cy, cx, r):
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2


def render(label: str, rng: np.random.RandomState, num_frames: int, size: int) -> np.ndarray:
    """uint8 [num_frames, size, size, 3] frames of one video of class `label`."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    background = np.array(BACKGROUND)
    if label not in CLASSES:
        raise ValueError(f"unknown demo class {label!r}; expected one of {CLASSES}")
    colour = np.array(PALETTE[CLASSES.index(label)])
    r = size * rng.uniform(0.1, 0.16)
    y, x = rng.uniform(r, size - r, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    speed = size * rng.uniform(0.03, 0.06)
    vy, vx = speed * np.sin(angle), speed * np.cos(angle)
    phase = rng.uniform(0, 2 * np.pi)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        if label == "bounce":
            mask = _disc(yy, xx, y, x, r)
            y, x = y + vy, x + vx
            if not r <= y <= size - r:
                vy = -vy
            if not r <= x <= size - r:
                vx = -vx
        elif label == "orbit":
            a = phase + t * 2 * np.pi / 16
            cy, cx = size / 2 + size * 0.28 * np.sin(a), size / 2 + size * 0.28 * np.cos(a)
            mask = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        elif label == "slide":
            cx = (x + t * abs(speed)) % size
            mask = (np.abs(yy - y) <= r * 0.6) & (np.minimum(np.abs(xx - cx), size - np.abs(xx - cx)) <= r)
        else:   # pulse
            mask = _disc(yy, xx, size / 2, size / 2, r * (1.4 + 0.8 * np.sin(phase + t * 2 * np.pi / 10)))
        frames[t] = np.where(mask[..., None], colour, background)
    return frames


def generate(root: str, seed: int = 0, videos_per_class: int = 6, num_frames: int = 32,
             size: int = 64, fps: int = 8) -> list[str]:
    """Writes the demo videos under `root` (skipping files already there); returns their paths."""
    paths = []
    for label_index, label in enumerate(CLASSES):
        os.makedirs(os.path.join(root, label), exist_ok=True)  # local-only (prepare uploads)
        for i in range(videos_per_class):
            path = os.path.join(root, label, f"{label}_{i:03d}.mp4")
            paths.append(path)
            if os.path.exists(path):  # local-only
                continue
            rng = np.random.RandomState([seed, label_index, i])
            tmp = path + ".tmp.mp4"
            write_video(tmp, render(label, rng, num_frames, size), fps=fps)
            os.replace(tmp, path)
    return paths


# The demo as a dataset reader (pipelines/datasets/common.py): the folder layout, classes in CLASSES
# order; the last video of each class folder is held out as the `test` split, the rest is `train`.
SPLITS = ("train", "test")


def generate_for(config, root: str) -> str:
    """Writes the demo videos the `dataset` config asks for under `root`; returns `root`."""
    generate(root, seed=config.seed, videos_per_class=config.demo_videos_per_class,
             num_frames=config.demo_num_frames, size=config.demo_size, fps=config.demo_fps)
    return root


def check(config) -> None:
    common.require(config.root, "the demo videos folder")


def list_videos(config, split: str):
    by_class = {}
    for path in common.list_files(config.root):
        by_class.setdefault(path[len(config.root):].lstrip("/").split("/")[0], []).append(path)
    chosen = [path for paths in by_class.values()
              for path in (paths[-1:] if split == "test" else paths[:-1])]
    yield from folder.list_folder(config.root, split, list(CLASSES), paths=sorted(chosen))


read = common.read_file
