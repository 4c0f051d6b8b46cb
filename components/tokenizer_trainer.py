"""TokenizerTrainer: trains the 3D-VQ (`magvit.train_tokenizer`) on the clip Examples.

Outputs the Model artifact (the training work directory: orbax checkpoints plus the run's
config.json, what `magvit.tokenizer.api.Tokenizer.load` reads; its `checkpoint_id` is a custom
property) and a ModelEvaluation with the reconstruction metrics on the `test` split, when the
clips have one (`metrics.json`, and each number as a custom property).
"""
import json
import os

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components import artifacts, config_param, progress
from magvit import remote
from magvit.tokenizer.api import Tokenizer
from magvit.train_tokenizer import train

SECTIONS = ("tokenizer",)
TRAIN_SPLIT, EVAL_SPLIT = "train", "test"


@component
def TokenizerTrainer(clips: InputArtifact[standard_artifacts.Examples],
                     model: OutputArtifact[standard_artifacts.Model],
                     evaluation: OutputArtifact[standard_artifacts.ModelEvaluation],
                     config: Parameter[str]):
    """Trains on the `train` split, evaluates on `test`; `config` holds the tokenizer section."""
    run_config = config_param.loads(config)
    splits = artifacts.split_names(clips)
    eval_pattern = artifacts.split_pattern(clips, EVAL_SPLIT) if EVAL_SPLIT in splits else None
    steps = run_config.tokenizer.training.num_train_steps
    with progress.stage("TokenizerTrainer", f"training the 3D-VQ for {steps} steps"):
        metrics = train(run_config, artifacts.split_pattern(clips, TRAIN_SPLIT), model.uri,
                        eval_pattern=eval_pattern)
    model.set_string_custom_property("checkpoint_id", Tokenizer.load(model.uri).checkpoint_id)
    remote.write_text(os.path.join(evaluation.uri, "metrics.json"),
                      json.dumps(metrics, indent=2, sort_keys=True))
    artifacts.set_numbers(evaluation, {k: v for k, v in metrics.items() if k.startswith("eval_")}
                          or metrics)
