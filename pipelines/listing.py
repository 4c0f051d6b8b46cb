"""The data job's listing, on workers: `list_videos(pipeline, config)` -> the Videos and the
listing Failures of every requested split, all splits in one pass.

Two ways to fan out (the reader's protocol, pipelines/datasets/common.py):
  by partition (folder, bair): the reader's cheap units (`partitions(config)`: e.g. one listdir
    per split finds the class folders) are spread over the workers (Reshuffle), each lists its own
    unit (`list_partition`: the files of one class folder, by prefix on an object store), the
    class names are gathered from all units (a small side input), and each unit's files are
    labelled (`label_partition`).
  by label rows (ucf101, kinetics600, ssv2): the file roots are expanded level by level on
    workers (`common.level`: one listing per folder, no request per file) until each folder of
    the last level is listed whole on its own worker (`common.list_files`: by prefix on an object
    store); each found file is keyed (`file_key`); the label files are read on workers, a row per
    entry keyed the same way (a file of one row per line, a CSV or a split list, by Beam's
    ReadFromText in byte ranges over workers, `parse_row_line`; else `read_rows`); found files and rows meet in one
    join on the key (only paths and small rows are shuffled), and each row is labelled with the
    first (sorted) path of its key (`label_row`, the class index a side input built once).
Any other reader lists each split in one step (`ListVideos`).
"""
import apache_beam as beam

from pipelines import datasets
from pipelines.datasets import common
from pipelines.prepare_steps import FAILURES, ListVideos

_PARTITION_API = ("partitions", "list_partition", "partition_classes", "label_partition")
_ROWS_API = ("file_roots", "file_key", "row_units", "class_index", "label_row")
_FILES = "files"


def fans_out(reader) -> bool:
    return lists_by_partition(reader) or lists_by_rows(reader)


def lists_by_partition(reader) -> bool:
    return all(hasattr(reader, name) for name in _PARTITION_API)


def lists_by_rows(reader) -> bool:
    reads_rows = hasattr(reader, "read_rows") or all(
        hasattr(reader, name) for name in ("row_header", "parse_row_line"))
    return reads_rows and all(hasattr(reader, name) for name in _ROWS_API)


class _Split(beam.DoFn):
    """Videos to the main output, Failures to FAILURES."""

    def __init__(self, config):
        self.config = config

    def reader(self):
        return datasets.get_reader(self.config.name)

    def split(self, items):
        for item in items:
            if isinstance(item, common.Failure):
                yield beam.pvalue.TaggedOutput(FAILURES, item)
            else:
                yield item


class _LabelUnit(_Split):
    """A listed unit -> its Videos and Failures."""

    def process(self, listed, classes):
        yield from self.split(self.reader().label_partition(listed, sorted(classes)))


class _LabelRows(_Split):
    """(key, {"rows": [Row], "paths": [path]}) -> a Video or Failure per row."""

    def process(self, element, classes):
        _, joined = element
        paths = list(joined["paths"])
        path = min(paths) if paths else None
        reader = self.reader()
        yield from self.split(reader.label_row(row, path, classes) for row in joined["rows"])


class _ExpandFolder(beam.DoFn):
    """(base, folder, levels left) -> its files (tagged FILES, as (base, path)): a folder with
    levels left is listed one level (its sub-folders go on, one left fewer), the others whole."""

    def __init__(self, extensions):
        self.extensions = extensions

    def process(self, unit):
        base, folder, levels = unit
        if levels > 0:
            files, folders = common.level(folder, within=base)
            for path in files:
                yield beam.pvalue.TaggedOutput(_FILES, (base, path))
            for sub in folders:
                yield base, sub, levels - 1
        else:
            for path in common.list_files(folder, self.extensions, within=base):
                yield beam.pvalue.TaggedOutput(_FILES, (base, path))


def _list_unit(unit, config):
    return datasets.get_reader(config.name).list_partition(config, unit)


def _classes_of(listed, config):
    return datasets.get_reader(config.name).partition_classes(listed)


def _keyed(found, config):
    base, path = found
    key = datasets.get_reader(config.name).file_key(base, path)
    if key is not None:
        yield key, path


def _rows_of(unit, config):
    return datasets.get_reader(config.name).read_rows(config, unit)


def _parse_line(line, config, unit, header):
    parsed = datasets.get_reader(config.name).parse_row_line(config, unit, header, line)
    if parsed is not None:
        yield parsed


def _class_index(_, config):
    return datasets.get_reader(config.name).class_index(config, common.split_names(config))


def list_videos(pipeline, config):
    """The listed Videos (`.videos`) and Failures (`[FAILURES]`) of `config`'s splits."""
    reader = datasets.get_reader(config.name)
    if lists_by_partition(reader):
        return _by_partition(pipeline, config, reader)
    if lists_by_rows(reader):
        return _by_rows(pipeline, config, reader)
    return (pipeline
            | "Splits" >> beam.Create(common.split_names(config))
            | "ListVideos" >> beam.ParDo(ListVideos(config)).with_outputs(FAILURES, main="videos"))


def _by_partition(pipeline, config, reader):
    listed = (pipeline
              | "ListingUnits" >> beam.Create(reader.partitions(config))
              | "OneUnitPerWorker" >> beam.Reshuffle()
              | "ListUnits" >> beam.Map(_list_unit, config))
    classes = (listed
               | "ClassesOfUnits" >> beam.FlatMap(_classes_of, config)
               | "Classes" >> beam.combiners.ToSet())
    return listed | "LabelUnits" >> beam.ParDo(_LabelUnit(config), beam.pvalue.AsSingleton(
        classes)).with_outputs(FAILURES, main="videos")


def _by_rows(pipeline, config, reader):
    roots = reader.file_roots(config)
    units = pipeline | "FileRoots" >> beam.Create([(base, base, levels) for base, levels in roots])
    found = []
    for level in range(max(levels for _, levels in roots) + 1):
        expanded = (units
                    | f"OneFolderPerWorker{level}" >> beam.Reshuffle()
                    | f"ListFolders{level}" >> beam.ParDo(_ExpandFolder(
                        getattr(reader, "EXTENSIONS", common.VIDEO_EXTENSIONS))).with_outputs(
                            _FILES, main="folders"))
        found.append(expanded[_FILES])
        units = expanded.folders
    paths = (found | "FoundFiles" >> beam.Flatten()
             | "KeyFiles" >> beam.FlatMap(_keyed, config))
    units = [unit for split in common.split_names(config) for unit in reader.row_units(config, split)]
    if hasattr(reader, "parse_row_line"):   # a row per line: Beam reads each file in byte ranges
        parts = []
        for i, unit in enumerate(units):
            header = reader.row_header(unit)
            parts.append(pipeline
                         | f"ReadLabelFile{i}" >> beam.io.ReadFromText(
                             unit[1], skip_header_lines=0 if header is None else 1)
                         | f"ParseRows{i}" >> beam.FlatMap(_parse_line, config, unit, header))
        rows = parts | "Rows" >> beam.Flatten()
    else:
        rows = (pipeline
                | "LabelFiles" >> beam.Create(units)
                | "OneLabelFilePerWorker" >> beam.Reshuffle()
                | "ReadRows" >> beam.FlatMap(_rows_of, config))
    classes = (pipeline
               | "ClassIndexOnce" >> beam.Create([None])
               | "ClassIndex" >> beam.Map(_class_index, config))
    return ({"rows": rows, "paths": paths}
            | "JoinRowsAndFiles" >> beam.CoGroupByKey()
            | "LabelRows" >> beam.ParDo(_LabelRows(config), beam.pvalue.AsSingleton(
                classes)).with_outputs(FAILURES, main="videos"))
