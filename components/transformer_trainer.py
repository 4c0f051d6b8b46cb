"""TransformerTrainer: trains the MAGVIT transformer (`magvit.train_transformer`) on token Examples.

The Model artifact is the training work directory: orbax checkpoints plus the run's config.json.
With `trainer_pools` (`--trainer_replicas` > 1) the training runs on a multi-host Vertex AI
CustomJob (`components.custom_job`) and the step waits for it.
"""
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components import artifacts, config_param, custom_job, progress, resources
from magvit import checkpoints
from magvit.train_transformer import train

SECTIONS = ("dataset", "transformer")
TRAIN_SPLIT = "train"
MODULE = "magvit.train_transformer"


def cli_args(config, tokens_pattern: str, tokenizer_dir: str, workdir: str) -> list[str]:
    """`python -m magvit.train_transformer` flags for the same training as `train(config,
    tokens_pattern, tokenizer_dir, workdir)` (writes the config JSON under `workdir`)."""
    return [custom_job.config_flag(config, workdir), f"--data={tokens_pattern}",
            f"--tokenizer={tokenizer_dir}", f"--workdir={workdir}"]


def train_on_custom_job(pools: resources.TrainerPools, config, tokens_pattern: str,
                        tokenizer_dir: str, workdir: str) -> dict:
    """Trains on the CustomJob's replicas; returns the last logged metrics plus `step`, read
    from the final checkpoint's meta (what `train` returns in-process)."""
    custom_job.run_trainer(pools, "TransformerTrainer", MODULE,
                           cli_args(config, tokens_pattern, tokenizer_dir, workdir), workdir)
    ckpt = checkpoints.Checkpointer(workdir)
    try:
        step = ckpt.latest_step()
        meta = (ckpt.read_meta(step) if step is not None else None) or {}
    finally:
        ckpt.close()
    if step is None:
        raise custom_job.CustomJobError(f"the trainers' CustomJob succeeded but left no "
                                        f"checkpoint in {workdir}")
    return dict(meta.get("metrics", {}), step=step)


@component
def TransformerTrainer(tokens: InputArtifact[standard_artifacts.Examples],
                       tokenizer: InputArtifact[standard_artifacts.Model],
                       model: OutputArtifact[standard_artifacts.Model], config: Parameter[str],
                       trainer_pools: Parameter[str] = ""):
    """Trains on the `train` split of `tokens`; `config` holds the dataset and transformer sections;
    `trainer_pools`: a `resources.TrainerPools` JSON: train on a multi-host CustomJob."""
    run_config = config_param.loads(config)
    steps = run_config.transformer.training.num_train_steps
    pools = resources.TrainerPools.from_json(trainer_pools)
    where = f" on a {pools.replicas}-replica Vertex AI CustomJob" if pools else ""
    pattern = artifacts.split_pattern(tokens, TRAIN_SPLIT)
    with progress.stage("TransformerTrainer", f"training the transformer for {steps} steps{where}"):
        if pools:
            metrics = train_on_custom_job(pools, run_config, pattern, tokenizer.uri, model.uri)
        else:
            metrics = train(run_config, pattern, tokenizer.uri, model.uri)
    artifacts.set_numbers(model, metrics)
