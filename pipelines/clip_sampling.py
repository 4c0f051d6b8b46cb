"""Cutting clips out of a decoded video: where clips start, and the frames that make them.

A clip is `num_frames` frames taken every `frame_stride` source frames, so it spans
`(num_frames - 1) * frame_stride + 1` source frames. Clip policies (`dataset.clip_policy`):
  all     every non-overlapping clip, starting at 0, num_frames * frame_stride apart
  random  `clips_per_video` distinct start positions drawn per video from `dataset.seed` and the
          video id (so the same video gets the same clips, whatever the worker or order)
  center  one clip in the middle of the video
Frames arrive scaled (shorter side = `dataset.resolution`, see `magvit.video_io`) and are centre-
cropped here. Decoding streams: only the frames of clips still open are held, and decoding stops
after the last clip's last frame.
"""
import itertools
import zlib
from typing import Iterable, Iterator

import numpy as np

from magvit import video_io
from pipelines.datasets.common import BadInput, Source
from tfrecords_schemas.clip import Clip

POLICIES = ("all", "random", "center")


def clip_span(num_frames: int, frame_stride: int) -> int:
    """Source frames covered by one clip."""
    return (num_frames - 1) * frame_stride + 1


def clip_starts(policy: str, total_frames: int, num_frames: int, frame_stride: int,
                clips_per_video: int = 1, rng: np.random.Generator | None = None) -> list[int]:
    """Sorted first-frame indices of the clips a video of `total_frames` frames gives."""
    span = clip_span(num_frames, frame_stride)
    positions = total_frames - span + 1     # possible start indices
    if positions <= 0:
        return []
    if policy == "all":
        return list(range(0, positions, num_frames * frame_stride))
    if policy == "center":
        return [(total_frames - span) // 2]
    if policy == "random":
        if rng is None:
            raise ValueError("the random clip policy needs a random generator")
        k = min(clips_per_video, positions)
        return sorted(int(s) for s in rng.choice(positions, size=k, replace=False))
    raise ValueError(f"unknown clip policy {policy!r}; expected one of {', '.join(POLICIES)}")


def video_rng(seed: int, video_id: str) -> np.random.Generator:
    """The random generator of one video: a function of the seed and the video id only."""
    return np.random.default_rng([seed, zlib.crc32(video_id.encode())])


def cut_clips(frames: Iterable[np.ndarray], starts: Iterable[int], num_frames: int,
              frame_stride: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (start, uint8 [T, H, W, 3]) for each start (increasing) whose clip is complete.

    Pulls frames lazily and stops pulling once the last start's clip is complete.
    """
    starts = iter(starts)
    next_start = next(starts, None)
    open_clips: dict[int, list[np.ndarray]] = {}
    for index, frame in enumerate(frames):
        while next_start is not None and next_start <= index:
            open_clips[next_start] = []
            next_start = next(starts, None)
        for start, taken in open_clips.items():
            if (index - start) % frame_stride == 0:
                taken.append(frame)
        for start in [s for s, taken in open_clips.items() if len(taken) == num_frames]:
            yield start, np.stack(open_clips.pop(start))
        if not open_clips and next_start is None:
            return


def center_crop(frame: np.ndarray, size: int) -> np.ndarray:
    """The central size x size window of an [H, W, C] frame (H, W >= size)."""
    height, width = frame.shape[:2]
    if height < size or width < size:
        raise ValueError(f"frame of {height}x{width} is smaller than the crop {size}x{size}")
    top, left = (height - size) // 2, (width - size) // 2
    return frame[top:top + size, left:left + size]


def sample_clips(source: Source, config) -> Iterator[Clip]:
    """The clips of one source under `config.clip_policy` (a `dataset` config section).

    Raises BadInput (after yielding whatever clips were complete) when the video is too short for
    one clip, decodes no frame, or ends before the frames its container holds or declares.
    """
    num_frames, stride, size = config.num_frames, config.frame_stride, config.resolution
    span = clip_span(num_frames, stride)
    video = source.video
    if config.clip_policy == "all":
        # No count needed: non-overlapping starts, clips that do not complete are dropped.
        total, starts = None, itertools.count(0, num_frames * stride)
    else:
        total = source.count_frames()
        starts = clip_starts(config.clip_policy, total, num_frames, stride, config.clips_per_video,
                             video_rng(config.seed, video.video_id))
        if not starts:
            raise BadInput("too_short", f"{video.path}: {total} frames, a clip of {num_frames} "
                           f"frames with stride {stride} needs {span}")
    frames = source.frames()
    decoded, exhausted = 0, False

    def cropped():
        nonlocal decoded, exhausted
        for frame in frames:
            decoded += 1
            yield center_crop(frame, size)
        exhausted = True

    expected = None if total is None else len(starts)
    made = 0
    try:
        for start, clip in cut_clips(cropped(), starts, num_frames, stride):
            made += 1
            yield Clip(frames=clip, fps=source.fps / stride, label=video.label,
                       label_name=video.label_name, video_id=video.video_id, clip_start=start,
                       dataset=config.name)
    except video_io.TruncatedVideo as e:
        raise BadInput("truncated", f"{e}: decoded {decoded} frames, {made} clips kept") from e
    finally:
        close = getattr(frames, "close", None)   # stop decoding (a generator) at once
        if close:
            close()
    if decoded == 0:
        raise BadInput("decode_error", f"{video.path}: no frame decoded")
    if made == 0 and decoded < span:
        raise BadInput("too_short", f"{video.path}: {decoded} frames, a clip of {num_frames} "
                       f"frames with stride {stride} needs {span}")
    if expected is not None and made < expected:
        raise BadInput("truncated", f"{video.path}: decoded {decoded} of {total} frames, "
                       f"{made} of {expected} clips")
    if exhausted and decoded < source.declared_frames:
        raise BadInput("truncated", f"{video.path}: decoded {decoded} of the "
                       f"{source.declared_frames} frames its container declares ({made} clips kept)")
    # No frame count but a duration: a file cut at a frame boundary ends early without any error.
    # A few frames of slack, as a declared duration can round up or include a longer audio track.
    slack = max(2, source.duration_frames // 20)
    if exhausted and not source.declared_frames and decoded < source.duration_frames - slack:
        raise BadInput("truncated", f"{video.path}: decoded {decoded} frames, {made} clips kept, "
                       f"but the container's duration ({source.duration_frames / source.fps:.2f} "
                       f"s at {source.fps:g} fps) implies {source.duration_frames}")
