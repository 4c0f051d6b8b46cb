"""TransformerTrainer: trains the MAGVIT transformer (`magvit.train_transformer`) on token Examples.

The Model artifact is the training work directory: orbax checkpoints plus the run's config.json.
"""
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components import artifacts, config_param, progress
from magvit.train_transformer import train

SECTIONS = ("dataset", "transformer")
TRAIN_SPLIT = "train"


@component
def TransformerTrainer(tokens: InputArtifact[standard_artifacts.Examples],
                       tokenizer: InputArtifact[standard_artifacts.Model],
                       model: OutputArtifact[standard_artifacts.Model], config: Parameter[str]):
    """Trains on the `train` split of `tokens`; `config` holds the dataset and transformer sections."""
    run_config = config_param.loads(config)
    steps = run_config.transformer.training.num_train_steps
    with progress.stage("TransformerTrainer", f"training the transformer for {steps} steps"):
        metrics = train(run_config, artifacts.split_pattern(tokens, TRAIN_SPLIT), tokenizer.uri,
                        model.uri)
    artifacts.set_numbers(model, metrics)
