"""The `dataset` section: which videos, how clips are cut, resized and stored."""
import ml_collections

# Per dataset: (resolution, source layout defaults). Numbers from the paper / official configs
# (shared/research/magvit_spec.md).
_DATASETS = {
    # A listed BAIR item is a tfrecord file of 256 trajectories, hence one per shard.
    "bair": dict(resolution=64, num_classes=0, camera="image_aux1", split="train,test",
                 videos_per_shard=1),
    "ucf101": dict(resolution=128, num_classes=101, split="all"),
    "kinetics600": dict(resolution=128, num_classes=600, split="train"),
    "ssv2": dict(resolution=128, num_classes=174, split="train"),
    "folder": dict(resolution=128, num_classes=0, split="all"),
    "demo": dict(resolution=32, num_classes=4, split="train,test"),
}
DATASET_NAMES = tuple(_DATASETS)


def dataset_config(name: str, num_frames: int = 16) -> ml_collections.ConfigDict:
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    spec = _DATASETS[name]
    return ml_collections.ConfigDict(dict(
        name=name,
        root="",                      # where the dataset lies in its native layout ("" = demo)
        split=spec["split"],          # comma-separated splits to write (train, test, validation,
                                      # all = train+test as MAGVIT trains UCF-101)
        ucf101_split_number=1,        # ucfTrainTestlist/{train,test}list0N.txt
        camera=spec.get("camera", ""),  # BAIR view: image_main | image_aux1
        num_classes=spec["num_classes"],
        num_frames=num_frames,        # T frames per clip
        frame_stride=1,               # take every k-th source frame
        resolution=spec["resolution"],  # square output side (H = W)
        # Resize the shorter side to `resolution` then centre-crop, as the official `min_resize`
        # + crop. Bilinear with antialiasing (as PIL / tf.image "bilinear", antialias=True), done
        # by FFmpeg's swscale during the RGB conversion: nearest | bilinear | bicubic | area | lanczos.
        resize_filter="bilinear",
        clip_policy="all",            # all (non-overlapping) | random (k per video) | center
        clips_per_video=1,            # k for the `random` policy
        image_format="png",           # png (lossless, the default: clips are decoded many times
                                      # during training and re-encoding loss would compound) | jpeg
        jpeg_quality=95,
        png_compression=0,            # deflate level 0-12 (libdeflate). 0: stored, raw size, a copy to
                                      # write and read; 1: ~0.7-0.9x the size for ~10x the encode CPU
        num_shards=0,                 # per split; 0 = automatic: ceil(listed videos / videos_per_shard)
        videos_per_shard=spec.get("videos_per_shard", 8),  # 16x128x128 PNG clips: ~70 MB shards
                                      # (UCF-101, ~11 clips a video) to ~110 MB (Kinetics-600)
        fps_when_unknown=10.0,        # clip fps for sources without a frame rate (BAIR trajectories)
        seed=0,                       # clip positions of the `random` policy; demo videos
        demo_videos_per_class=6,      # embedded demo dataset: videos per class (the last: test)
        demo_num_frames=32,
        demo_size=64,
        demo_fps=8,
    ))
