"""The `eval` section: FVD protocol and sample counts (shared/research/fvd.md)."""
import ml_collections


def eval_config(num_samples: int, repeats: int = 4) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        fvd_protocol="magvit",        # resize / value-range protocol (see magvit.metrics)
        i3d_weights="",               # local path to the TF-Hub i3d-kinetics-400 module
        allow_random_i3d=False,       # smoke tests only; marked in every output
        num_samples=num_samples,
        repeats=repeats,
        batch_size=8,
        fvd_threshold=1e9,            # blessing when FVD < threshold
    ))
