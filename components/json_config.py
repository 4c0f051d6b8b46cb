"""A config file that loads a whole run config from JSON: `--config=<this file>:<JSON path>`.

The trainers' CustomJob (`components.custom_job`) gives its replicas the exact config of the
pipeline step this way: the step writes it as JSON (local or gs://) and every replica's
`python -m magvit.train_tokenizer` / `magvit.train_transformer` reads it back through
ml_collections' config-file flag, so `--config.key=value` overrides still apply on top.
"""
import tensorflow as tf

from components import config_param


def get_config(path: str):
    if not path:
        raise ValueError(f"--config={__file__}:PATH needs the path of a JSON config after ':'")
    if not tf.io.gfile.exists(path):
        raise ValueError(f"--config={__file__}:{path}: no such JSON config")
    with tf.io.gfile.GFile(path) as f:
        return config_param.loads(f.read())
