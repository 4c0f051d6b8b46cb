"""Record formats: the contract between the floors.

- `clip`:   raw clips, written by the data jobs, read by tokenizer training and pre-tokenization.
- `tokens`: token grids, written by pre-tokenization, read by transformer training.

Each module has one function that builds a record (`build_*` -> tf.train.Example), one that parses
it (`parse_*`, usable eagerly and inside tf.data), a `check_*` that explains what is wrong with a
foreign record, and its TFMD schema (`schema()`; the same text is checked in as `*.schema.pbtxt`).
"""
from tfrecords_schemas.common import SchemaError

__all__ = ["SchemaError"]
