"""A folder of images as the 2D tokenizer's training data (`tokenizer.training.image_folder`).

Every .png / .jpg / .jpeg file under the folder, nested folders included, local or remote (every
access goes through tf.io.gfile), in sorted path order. Each image is decoded to RGB uint8 and
brought to the setting's resolution as the clips are (`dataset.resolution`): the shorter side
scaled to the resolution by `magvit.video_io.resize_shorter` (FFmpeg swscale, the filter of
`tokenizer.training.image_resize_filter`, antialiased bilinear by default), then the central
square crop. An image is a one-frame clip: `frames` [1, H, W, 3] uint8 and `label` 0.

Held-out split: an image is held out for evaluation when a hash of its path relative to the
folder falls in the first `image_eval_fraction` of the hash range, so the split depends on the
names alone (not on listing order, and adding images never moves an existing one). Training
order, resumption and multi-process sharding are `magvit.data`'s, one element per file.
"""
import dataclasses
import hashlib
import re

import numpy as np
import tensorflow as tf

from magvit import data, video_io

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
FLAG = "config.tokenizer.training.image_folder"
_UNDECODABLE = "cannot be decoded as a png / jpeg image"


def list_images(root: str) -> list[str]:
    """Sorted paths of the images under `root` (nested folders searched)."""
    if not tf.io.gfile.isdir(root):
        raise FileNotFoundError(f"--{FLAG}={root!r}: no such folder")
    files = []
    for folder, _, names in tf.io.gfile.walk(root):
        files.extend(f"{folder.rstrip('/')}/{n}" for n in names
                     if n.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise FileNotFoundError(f"--{FLAG}={root!r}: the folder (with its sub-folders) holds no "
                                f"image ({' / '.join(IMAGE_EXTENSIONS)} files)")
    return sorted(files)


def is_held_out(relative_path: str, eval_fraction: float) -> bool:
    """Whether the image at this path (relative to the folder) belongs to the held-out split."""
    bucket = int(hashlib.sha256(relative_path.encode()).hexdigest()[:8], 16) / 2 ** 32
    return bucket < eval_fraction


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central size x size window of an [H, W, C] image (H, W >= size)."""
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return image[top:top + size, left:left + size]


def decode(contents: bytes, path: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] pixels of an encoded png / jpeg; ValueError naming `path` if it is not
    one."""
    try:
        return tf.io.decode_image(contents, channels=3, expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
        reason = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", e.message).strip()
        raise ValueError(f"{path}: {_UNDECODABLE} ({reason})") from None


def to_resolution(image: np.ndarray, resolution: int, resize_filter: str = "bilinear"):
    """The image as the clips' frames are made: shorter side scaled, then centre-cropped."""
    return center_crop(video_io.resize_shorter(image, resolution, resize_filter), resolution)


def load_image(path: str, resolution: int, resize_filter: str = "bilinear") -> np.ndarray:
    """One image file at the setting's resolution: uint8 [resolution, resolution, 3]."""
    with tf.io.gfile.GFile(path, "rb") as f:
        return to_resolution(decode(f.read(), path), resolution, resize_filter)


def image_parser(resolution: int, resize_filter: str = "bilinear"):
    """Parser of an image path (a tf.string) into a one-frame clip, for `magvit.data`."""
    if resize_filter not in video_io.INTERPOLATIONS:
        raise ValueError(f"--config.tokenizer.training.image_resize_filter={resize_filter!r}: "
                         f"expected one of {', '.join(video_io.INTERPOLATIONS)}")

    def load(path):
        path = path.numpy().decode()
        return load_image(path, resolution, resize_filter)

    def parse(path):
        image = tf.py_function(load, [path], tf.uint8)
        image.set_shape((resolution, resolution, 3))
        return {"frames": image[None], "label": tf.constant(0, tf.int32)}
    return parse


@dataclasses.dataclass(frozen=True)
class ImageFolder:
    """The images of a folder, split into training and held-out files."""
    root: str
    train_files: tuple[str, ...]
    eval_files: tuple[str, ...]

    @classmethod
    def from_config(cls, training) -> "ImageFolder":
        """From a `tokenizer.training` section: `image_folder`, `image_eval_fraction`."""
        root = training.image_folder
        fraction = float(training.image_eval_fraction)
        if not 0 <= fraction < 1:
            raise ValueError(f"--config.tokenizer.training.image_eval_fraction={fraction:g}: must "
                             "be in [0, 1)")
        files = list_images(root)
        prefix = root.rstrip("/") + "/"
        held_out = [is_held_out(f[len(prefix):], fraction) for f in files]
        train = tuple(f for f, h in zip(files, held_out) if not h)
        if not train:
            raise ValueError(f"--{FLAG}={root!r}: all {len(files)} image(s) fall in the held-out "
                             f"share (image_eval_fraction={fraction:g}); add images or lower it")
        return cls(root, train, tuple(f for f, h in zip(files, held_out) if h))

    def iterator(self, resolution: int, resize_filter: str, batch_size: int, *, held_out: bool,
                 train: bool, seed: int = 0, position=None) -> "ImageIterator":
        """Batches of the training (or `held_out`) images: shuffled and endless when `train`,
        else one pass in path order."""
        files = self.eval_files if held_out else self.train_files
        return ImageIterator(f"{self.root} ({'held-out' if held_out else 'training'} images)",
                             image_parser(resolution, resize_filter), batch_size, seed=seed,
                             train=train, position=position, flag=FLAG, files=list(files),
                             records=False)


class ImageIterator(data.ResumableIterator):
    """`data.ResumableIterator` over image paths whose decoding errors name the file."""

    def __next__(self) -> dict:
        try:
            return super().__next__()
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
            lines = [line for line in e.message.splitlines() if _UNDECODABLE in line]
            if not lines:
                raise
            raise ValueError(lines[-1].split("ValueError: ", 1)[-1].strip()) from None
