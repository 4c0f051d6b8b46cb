"""One process of the multi-process tokenizer test (tests/test_distributed.py), run as a script.

Trains the tiny tokenizer for a few steps on a fixed global batch sequence, this process feeding
its own slice of each global batch, saves a checkpoint under argv[1]/work and (process 0) the
final parameters to argv[1]/params.npz. The cluster comes from the MAGVIT_* environment
variables (magvit.distributed); without them the process trains alone.
"""
import os
import sys

import jax
import numpy as np

from magvit import distributed

STEPS = 3
GLOBAL_BATCH = 4


def global_batches(clip_shape):
    rng = np.random.RandomState(0)
    return rng.randint(0, 256, (STEPS, GLOBAL_BATCH, *clip_shape, 3)).astype(np.uint8)


def main(out_dir: str):
    distributed.initialize()
    from magvit import checkpoints, train_utils   # after initialize: jax sees every process
    from magvit.configs import get_config
    from magvit.tokenizer import train_step as train_step_lib
    config = get_config("tiny").tokenizer
    config.training.batch_size = GLOBAL_BATCH
    models = train_step_lib.Models(config)
    mesh = train_utils.make_mesh()
    step = train_step_lib.jit_train_step(models, mesh, gan=False)
    state = train_utils.replicate(models.init(jax.random.PRNGKey(0)), mesh)
    per_process = GLOBAL_BATCH // jax.process_count()
    mine = slice(jax.process_index() * per_process, (jax.process_index() + 1) * per_process)
    for frames in global_batches(tuple(config.clip_shape)):
        state, metrics = step(state, train_utils.shard_batch({"frames": frames[mine]}, mesh))
    checkpointer = checkpoints.Checkpointer(os.path.join(out_dir, "work"))
    checkpointer.save(STEPS, state, {"processes": jax.process_count()}, force=True)
    checkpointer.close()
    if jax.process_index() == 0:
        leaves = jax.tree_util.tree_flatten_with_path(state.params)[0]
        np.savez(os.path.join(out_dir, "params.npz"),  # local-only
                 **{jax.tree_util.keystr(p): np.asarray(x.addressable_data(0)) for p, x in leaves})
        print(f"devices={jax.device_count()} processes={jax.process_count()} "
              f"loss={float(metrics['generator_loss']):.6f}")
    jax.distributed.shutdown() if jax.distributed.is_initialized() else None


if __name__ == "__main__":
    main(sys.argv[1])
