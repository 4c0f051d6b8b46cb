"""Listing fanned out over workers (pipelines/listing.py): the same Videos and Failures as the
reader's one-split-at-a-time `list_videos`, locally (with links) and on a remote (ram://) store."""
import os
import uuid

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to

from magvit.configs import get_config
from pipelines import beam_options, listing
from pipelines.datasets import common, folder
from pipelines.prepare_steps import FAILURES

FILES = ["train/a/x.mp4", "train/a/x.mkv", "train/a/deep/y.mp4", "train/b/z.avi",
         "train/loose.mp4", "train/notes.txt", "test/a/t.mp4", "test/c/u.mp4", "test/empty/.keep"]


def _config(root):
    config = get_config("tiny").dataset
    config.name, config.root, config.split = "folder", root, "train,test"
    return config


def _layout(root):
    for name in FILES:
        path = f"{root}/{name}"
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(b"")


def _sequential(config):
    return [item for split in common.split_names(config)
            for item in folder.list_videos(config, split)]


def _fanned_out(config):
    with beam.Pipeline(options=beam_options.pipeline_options(["--runner=DirectRunner"])) as p:
        listed = listing.list_videos(p, config)
        got = ((listed.videos, listed[FAILURES]) | beam.Flatten()
               | beam.Map(lambda item: (type(item).__name__, tuple(vars(item).values()))))
        assert_that(got, equal_to([(type(item).__name__, tuple(vars(item).values()))
                                   for item in _sequential(config)]))


@pytest.mark.parametrize("remote", [False, True])
def test_fanned_out_listing_equals_the_readers(tmp_path, remote):
    root = f"ram://listing-{uuid.uuid4().hex}" if remote else str(tmp_path / "root")
    _layout(root)
    if not remote:
        outside = tmp_path / "outside" / "d"
        outside.mkdir(parents=True)
        (outside / "v.mp4").write_bytes(b"")
        os.symlink(str(outside), os.path.join(root, "train", "linked"))   # followed: class `linked`
        os.symlink("..", os.path.join(root, "train", "b", "up"))          # a loop: not followed
    config = _config(root)
    expected = _sequential(config)
    names = sorted(v.video_id for v in expected if v.split == "train")
    assert names == sorted(["a/x.mp4", "a/x.mkv", "a/deep/y", "b/z", "loose"]
                           + ([] if remote else ["linked/v"]))
    assert {v.label_name for v in expected if v.split == "test"} == {"a", "c"}
    assert listing.fans_out(folder)
    assert len(folder.partitions(config)) == (8 if not remote else 7)   # 1 per split + folders
    _fanned_out(config)
