"""Listing fanned out over workers (pipelines/listing.py): the same Videos and Failures as the
reader's one-split-at-a-time `list_videos`, locally (with links) and on a remote (ram://) store."""
import os
import uuid

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to

from magvit.configs import get_config
from pipelines import beam_options, datasets, listing
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
    reader = datasets.get_reader(config.name)
    return [item for split in common.split_names(config)
            for item in reader.list_videos(config, split)]


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


# ------------------------------------------------------------- the readers listed by label rows
def _write(root, files: dict):
    for name, text in files.items():
        path = f"{root}/{name}"
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text)


UCF = {"ucfTrainTestlist/classInd.txt": "1 Apply\n2 HandstandPushups\n",
       "ucfTrainTestlist/trainlist01.txt": "Apply/v_Apply_g02.avi 1\nHandstandPushups/"
                                           "v_HandStandPushups_g02.avi 2\nApply/v_Apply_g09.avi 1\n",
       "ucfTrainTestlist/testlist01.txt": "Apply/v_Apply_g01.avi\nJuggle/v_Juggle_g01.avi\n",
       "UCF-101/Apply/v_Apply_g01.avi": "", "UCF-101/Apply/v_Apply_g02.avi": "",
       "UCF-101/HandstandPushups/v_HandStandPushups_g02.avi": "", "UCF-101/Apply/notes.txt": ""}
KINETICS = {"annotations/train.csv": "label,youtube_id,time_start,time_end,split\n"
                                     "abseiling,aaa,0,10,train\n\"zumba, fast\",bbb,5,15,train\n"
                                     "abseiling,gone,0,10,train\n",
            "annotations/validate.csv": "label,youtube_id,time_start,time_end,split\n"
                                        "abseiling,ccc,1,11,validate\nnew class,ddd,0,10,validate\n",
            "train/abseiling/aaa_000000_000010.mp4": "", "train/zumba/deep/bbb_000005_000015.mkv": "",
            "train/zumba/bbb_000005_000015.mp4": "", "validation/ccc_000001_000011.mp4": "",
            "ddd_000000_000010.mp4": ""}
SSV2 = {"labels.json": '{"Holding something": "0", "Pushing something": "1"}',
        "train.json": '[{"id": "11", "template": "Holding [something]"}, {"id": "12", "template": '
                      '"Pushing [something]"}, {"id": "13", "template": "Spinning [something]"}, '
                      '{"id": "14", "template": "Holding [something]"}]',
        "validation.json": '[{"id": "21", "template": "Pushing [something]"}]',
        "20bn-something-something-v2/11.webm": "", "20bn-something-something-v2/12.webm": "",
        "20bn-something-something-v2/13.webm": "", "20bn-something-something-v2/more/21.mp4": ""}
BAIR = {"softmotion30_44k/train/traj_0_to_255.tfrecords": "",
        "softmotion30_44k/train/traj_256_to_511.tfrecords": "",
        "softmotion30_44k/test/traj_0_to_255.tfrecords": "", "softmotion30_44k/test/x.txt": ""}
LAYOUTS = {"ucf101": (UCF, "train,test,all"), "kinetics600": (KINETICS, "train,validation"),
           "ssv2": (SSV2, "train,validation"), "bair": (BAIR, "train,test")}


# One store per layout by default (a pipeline each costs seconds); the other four are slow-marked.
_CASES = [pytest.param(name, remote, marks=() if (name in ("kinetics600", "ssv2")) == remote
                       else pytest.mark.slow)
          for name in ("bair", "kinetics600", "ssv2", "ucf101") for remote in (False, True)]


@pytest.mark.parametrize("name,remote", _CASES)
def test_every_native_layout_fans_out_to_the_readers_listing(tmp_path, name, remote):
    root = f"ram://listing-{uuid.uuid4().hex}" if remote else str(tmp_path / "root")
    files, splits = LAYOUTS[name]
    _write(root, files)
    config = _config(root)
    config.name, config.split = name, splits
    reader = datasets.get_reader(name)
    assert listing.fans_out(reader)
    expected = _sequential(config)
    _fanned_out(config)
    summary = sorted((type(i).__name__, i.split, getattr(i, "video_id", getattr(i, "reason", "")),
                      getattr(i, "label", None), i.path[len(root):]) for i in expected)
    assert summary == EXPECTED[name]


EXPECTED = {
    "ucf101": [
        ("Failure", "all", "missing_video", None, "/UCF-101/Apply/v_Apply_g09.avi"),
        ("Failure", "all", "unknown_label", None, "/UCF-101/Juggle/v_Juggle_g01.avi"),
        ("Failure", "test", "unknown_label", None, "/UCF-101/Juggle/v_Juggle_g01.avi"),
        ("Failure", "train", "missing_video", None, "/UCF-101/Apply/v_Apply_g09.avi"),
        ("Video", "all", "v_Apply_g01", 0, "/UCF-101/Apply/v_Apply_g01.avi"),
        ("Video", "all", "v_Apply_g02", 0, "/UCF-101/Apply/v_Apply_g02.avi"),
        ("Video", "all", "v_HandStandPushups_g02", 1,
         "/UCF-101/HandstandPushups/v_HandStandPushups_g02.avi"),
        ("Video", "test", "v_Apply_g01", 0, "/UCF-101/Apply/v_Apply_g01.avi"),
        ("Video", "train", "v_Apply_g02", 0, "/UCF-101/Apply/v_Apply_g02.avi"),
        ("Video", "train", "v_HandStandPushups_g02", 1,
         "/UCF-101/HandstandPushups/v_HandStandPushups_g02.avi")],
    "kinetics600": [
        ("Failure", "train", "missing_video", None, "/train/gone_000000_000010.mp4"),
        ("Failure", "validation", "unknown_label", None, "/ddd_000000_000010.mp4"),
        ("Video", "train", "aaa_000000_000010", 0, "/train/abseiling/aaa_000000_000010.mp4"),
        ("Video", "train", "bbb_000005_000015", 1, "/train/zumba/bbb_000005_000015.mp4"),
        ("Video", "validation", "ccc_000001_000011", 0, "/validation/ccc_000001_000011.mp4")],
    "ssv2": [
        ("Failure", "train", "missing_video", None, "/20bn-something-something-v2/14.webm"),
        ("Failure", "train", "unknown_label", None, "/20bn-something-something-v2/13.webm"),
        ("Video", "train", "11", 0, "/20bn-something-something-v2/11.webm"),
        ("Video", "train", "12", 1, "/20bn-something-something-v2/12.webm"),
        ("Video", "validation", "21", 1, "/20bn-something-something-v2/more/21.mp4")],
    "bair": [
        ("Video", "test", "traj_0_to_255", -1, "/softmotion30_44k/test/traj_0_to_255.tfrecords"),
        ("Video", "train", "traj_0_to_255", -1, "/softmotion30_44k/train/traj_0_to_255.tfrecords"),
        ("Video", "train", "traj_256_to_511", -1,
         "/softmotion30_44k/train/traj_256_to_511.tfrecords")],
}


def test_a_remote_level_asks_is_directory_of_folders_only(monkeypatch):
    root = f"ram://level-{uuid.uuid4().hex}"
    _write(root, {f"train/{c}/{i}.mp4": "" for c in ("a", "b") for i in range(5)}
           | {"train/loose.mp4": "", "train/notes.txt": "", "train/README": ""})
    asked = []
    isdir = tf.io.gfile.isdir
    monkeypatch.setattr(tf.io.gfile, "isdir", lambda path: asked.append(path) or isdir(path))
    files, folders = common.level(f"{root}/train")
    assert files == [f"{root}/train/{n}" for n in ("README", "loose.mp4", "notes.txt")]
    assert folders == [f"{root}/train/a", f"{root}/train/b"]
    assert sorted(asked) == [f"{root}/train/{n}" for n in ("README", "a", "b")]   # no video asked
