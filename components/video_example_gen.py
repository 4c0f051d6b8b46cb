"""VideoExampleGen: the dataset's Beam data job (`pipelines.prepare`) into a clip Examples artifact.

Output layout (the data job's): `<uri>/<dataset>/<split>/clips-*.tfrecord` and the dead-letter
`failures-*.jsonl` per split, with `stats.json` and `schema.pbtxt` in `<uri>/<dataset>/`. The
splits and their patterns are artifact properties (`components.artifacts`), and so are the videos
read, clips written and failures of each split.
"""

from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components import artifacts, config_param, progress
from magvit import remote
from pipelines.prepare import run_prepare

SECTIONS = ("dataset",)
COUNTS = ("videos_read", "clips_written", "failures")


@component
def VideoExampleGen(examples: OutputArtifact[standard_artifacts.Examples],
                    config: Parameter[str], beam_args: Parameter[str]):
    """Runs the data job of `config.dataset` (JSON, see config_param) with the given Beam options."""
    dataset = config_param.loads(config).dataset
    with progress.stage("VideoExampleGen", f"cutting {dataset.name} videos into clips"):
        stats = run_prepare(dataset, examples.uri, beam_args=config_param.loads_list(beam_args))
    splits = stats["splits"]
    artifacts.set_splits(examples, {
        split: remote.relative(s["clips_pattern"], examples.uri)
        for split, s in splits.items()})
    artifacts.set_numbers(examples, {split: {k: s[k] for k in COUNTS} for split, s in splits.items()})
    examples.set_string_custom_property("dataset", dataset.name)
