"""The data job's listing, on workers: `list_videos(pipeline, config)` -> the Videos and the
listing Failures of every requested split.

A reader that splits its layout into units (`partitions(config)`, cheap: e.g. one listdir per
split finds the class folders) is listed in parallel: the units are spread over the workers
(Reshuffle), each lists its own unit (`list_partition`: e.g. the files of one class folder, by
prefix on an object store, with no request per file), the class names are gathered from all units
(a small side input), and each unit's files are labelled (`label_partition`). All splits go in one
pass. Other readers list each split in one step (`ListVideos`).
"""
import apache_beam as beam

from pipelines import datasets
from pipelines.datasets import common
from pipelines.prepare_steps import FAILURES, ListVideos


def fans_out(reader) -> bool:
    return all(hasattr(reader, name) for name in ("partitions", "list_partition",
                                                  "label_partition"))


def _list_unit(unit, config):
    return datasets.get_reader(config.name).list_partition(config, unit)


def _class_of(listed):
    _, _, name, paths = listed
    if name and paths:
        yield name


class _LabelUnit(beam.DoFn):
    """A listed unit -> its Videos (main output) and Failures (tagged)."""

    def __init__(self, config):
        self.config = config

    def process(self, listed, classes):
        reader = datasets.get_reader(self.config.name)
        for item in reader.label_partition(listed, sorted(classes)):
            if isinstance(item, common.Failure):
                yield beam.pvalue.TaggedOutput(FAILURES, item)
            else:
                yield item


def list_videos(pipeline, config):
    """The listed Videos (`.videos`) and Failures (`[FAILURES]`) of `config`'s splits."""
    reader = datasets.get_reader(config.name)
    if not fans_out(reader):
        return (pipeline
                | "Splits" >> beam.Create(common.split_names(config))
                | "ListVideos" >> beam.ParDo(ListVideos(config)).with_outputs(
                    FAILURES, main="videos"))
    listed = (pipeline
              | "ListingUnits" >> beam.Create(reader.partitions(config))
              | "OneUnitPerWorker" >> beam.Reshuffle()
              | "ListUnits" >> beam.Map(_list_unit, config))
    classes = (listed
               | "ClassesOfUnits" >> beam.FlatMap(_class_of)
               | "Classes" >> beam.combiners.ToSet())
    return listed | "LabelUnits" >> beam.ParDo(_LabelUnit(config), beam.pvalue.AsSingleton(
        classes)).with_outputs(FAILURES, main="videos")
