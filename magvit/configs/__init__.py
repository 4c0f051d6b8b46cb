"""Configs as data: one ml_collections ConfigDict per paper setting, plus `tiny`.

A config is composed of four sections, each built by its own module from a few choices:
  config.dataset      (dataset.py)      which videos, clip shape, sampling, encoding
  config.tokenizer    (tokenizer.py)    3D-VQ model, discriminator, losses, optimiser, training
  config.transformer  (transformer.py)  bidirectional transformer, COMMIT tasks, decoding
  config.eval         (evaluation.py)   FVD protocol and sample counts

`get_config(name)` returns the named setting; `NAMES` lists them. On the command line,
`--config=NAME` (or a path to a config file) and `--config.key=value` overrides work as in
ml_collections (see `magvit.configs.flags`).
"""
from magvit.configs.settings import NAMES, get_config

__all__ = ["NAMES", "get_config"]
