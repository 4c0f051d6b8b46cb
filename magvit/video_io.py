"""Video files in and out with PyAV (FFmpeg): streaming reads, MP4 / GIF writes.

Reading is a generator of RGB uint8 frames, so memory stays bounded whatever the video's length.
"""
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter


class VideoError(ValueError):
    """A video file that cannot be opened or decoded; the message names the file."""


class TruncatedVideo(VideoError):
    """A video file that ends inside a frame's data (a cut-off download or copy). Raised by
    `VideoFile.frames` after it has yielded every frame before the damaged one."""


class VideoFile:
    """An open video file (a path or a binary file object): its first video stream's `fps`,
    `declared_frames` (0 when the container does not say), `declared_seconds` and size, and `frames()`, which decodes
    the stream once, streaming, and then closes the file (as does `close()`, or dropping the
    object). One open serves both, as opening (probing) a file decodes a few frames."""

    def __init__(self, path):
        self.name = _name(path)
        try:
            self.container = av.open(path)
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise VideoError(f"{self.name}: cannot open video ({type(e).__name__}: {e})") from e
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(f"{self.name}: no video stream")
        self.stream = self.container.streams.video[0]
        rate = self.stream.average_rate or self.stream.guessed_rate or 0
        self.fps, self.declared_frames = float(rate), int(self.stream.frames or 0)
        # The container's duration (seconds, 0 when unknown): Matroska/WebM state no frame count.
        self.declared_seconds = float(self.container.duration or 0) / av.time_base
        self.width, self.height = self.stream.codec_context.width, self.stream.codec_context.height

    def frames(self, shorter_side: int | None = None,
               interpolation: str = "bilinear") -> Iterator[np.ndarray]:
        """Yields the frames as RGB uint8 [H, W, 3]. With `shorter_side`, each frame is scaled
        (during the RGB conversion, by FFmpeg) so that its shorter side has that many pixels,
        keeping the aspect ratio; `interpolation` names the filter."""
        interpolation = _interpolation(interpolation)
        # Slice threads only: with frame threads, how many frames survive a decode error in a
        # damaged file depends on timing, and the data jobs must be deterministic.
        self.stream.thread_type = "SLICE"
        reformatter = VideoReformatter()
        packets = self.container.demux(self.stream)
        decoded = 0
        try:
            packet = next(packets, None)
            while packet is not None:
                following = next(packets, None)   # one packet ahead, to know which is the last
                try:
                    decoded_frames, cut_off = packet.decode(), False
                except av.error.InvalidDataError:
                    if following is not None and following.size:
                        raise                      # damage inside the stream
                    # the last packet is damaged: flush the frames the decoder holds, then stop
                    decoded_frames, cut_off = self.stream.decode(None), True
                for frame in decoded_frames:
                    decoded += 1
                    yield _to_rgb(frame, shorter_side, interpolation, reformatter)
                if cut_off:
                    raise TruncatedVideo(f"{self.name}: the file ends inside the data of frame "
                                         f"{decoded + 1} (cut off?)")
                packet = following
        except VideoError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise VideoError(f"{self.name}: cannot decode video ({type(e).__name__}: {e})") from e
        finally:
            self.close()   # decoding is one pass

    def close(self) -> None:
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def video_info(path) -> dict:
    """Frame rate, frame count (as the container declares it) and size of the first video stream."""
    with VideoFile(path) as video:
        return dict(fps=video.fps, frames=video.declared_frames, width=video.width,
                    height=video.height)


# Resampling filters by name (FFmpeg swscale). When shrinking, swscale widens the filter with the
# scale factor, so "bilinear" is the antialiased bilinear of PIL / tf.image.resize(antialias=True).
INTERPOLATIONS = {"nearest": "POINT", "bilinear": "BILINEAR", "bicubic": "BICUBIC",
                  "area": "AREA", "lanczos": "LANCZOS"}


def _name(source) -> str:
    return getattr(source, "name", source)


def scaled_size(height: int, width: int, shorter_side: int) -> tuple[int, int]:
    """(height, width) with the shorter side scaled to `shorter_side`, keeping the aspect ratio."""
    scale = shorter_side / min(height, width)
    return max(shorter_side, round(height * scale)), max(shorter_side, round(width * scale))


def _interpolation(name: str) -> str:
    if name not in INTERPOLATIONS:
        raise ValueError(f"unknown resize filter {name!r}; expected one of {', '.join(INTERPOLATIONS)}")
    return INTERPOLATIONS[name]


def _to_rgb(frame: av.VideoFrame, shorter_side: int | None, interpolation: str,
            reformatter: VideoReformatter | None = None) -> np.ndarray:
    """`reformatter`: one per stream, so FFmpeg's scaler is set up once, not for every frame
    (`frame.to_ndarray(width=...)` builds a new one each call: ~2x the cost of a small frame)."""
    reformatter = reformatter or VideoReformatter()
    if shorter_side is None:
        return reformatter.reformat(frame, format="rgb24").to_ndarray()
    height, width = scaled_size(frame.height, frame.width, shorter_side)
    return reformatter.reformat(frame, format="rgb24", width=width, height=height,
                                interpolation=interpolation).to_ndarray()


def iter_frames(path, shorter_side: int | None = None,
                interpolation: str = "bilinear") -> Iterator[np.ndarray]:
    """Yields the frames of `path` (a file name or binary file object); see `VideoFile.frames`."""
    with VideoFile(path) as video:
        yield from video.frames(shorter_side, interpolation)


def resize_shorter(frame: np.ndarray, shorter_side: int, interpolation: str = "bilinear") -> np.ndarray:
    """Scales an RGB uint8 [H, W, 3] frame as `iter_frames(..., shorter_side)` does."""
    interpolation = _interpolation(interpolation)
    if min(frame.shape[:2]) == shorter_side:
        return frame
    return _to_rgb(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"),
                   shorter_side, interpolation)


def count_frames(path) -> int:
    """Frames in the first video stream, counted by demuxing packets (no decoding)."""
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoError(f"{_name(path)}: no video stream")
            stream = container.streams.video[0]
            return sum(1 for packet in container.demux(stream) if packet.size)
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{_name(path)}: cannot read video ({type(e).__name__}: {e})") from e


def read_video(path: str) -> np.ndarray:
    """All frames of `path` as uint8 [T, H, W, 3] (for short clips; use iter_frames otherwise)."""
    frames = list(iter_frames(path))
    if not frames:
        raise VideoError(f"{path}: no frames decoded")
    return np.stack(frames)


def write_video(path: str, frames: np.ndarray, fps: float = 8, crf: int = 12) -> None:
    """Writes uint8 [T, H, W, 3] frames to `path`: H.264 MP4 (even H and W), or GIF by extension.

    The same frames always give the same bytes: encoding and the RGB -> YUV conversion are
    single-threaded, and x264's macroblock-tree rate control is off (`mbtree=0`): with it, the
    same frames encoded in one process gave different bitstreams now and then (about one video
    in 150 of the demo set differed between runs), a dependence on memory contents; without it,
    15 runs of 18 videos x 6 encodes each gave one bitstream per video.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: frames must be uint8 [T, H, W, 3], got {frames.dtype} "
                         f"{list(frames.shape)}")
    gif = path.lower().endswith(".gif")
    with av.open(path, mode="w") as container:
        if gif:
            stream = container.add_stream("gif", rate=int(round(fps)))
            stream.pix_fmt = "rgb8"
        else:
            stream = container.add_stream("libx264", rate=int(round(fps)),
                                          options={"crf": str(crf), "threads": "1",
                                                   "x264-params": "mbtree=0"})
            stream.pix_fmt = "yuv420p"
        stream.height, stream.width = frames.shape[1:3]
        stream.codec_context.thread_count = 1
        for image in frames:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
                format=stream.pix_fmt, threads=1)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
