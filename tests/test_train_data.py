"""Training on real video files through animatediff.data: a captioned folder, the WebVid layout, tar shards."""

from __future__ import annotations

import csv

import pytest
import torch

from animatediff.data import prepare_shards
from animatediff.data.synthetic import write_dataset_folder
from animatediff.train.trainer import Trainer
from tests.test_train_synthetic import fresh_accelerate_state, train_config  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")
CLIPS = {"num_frames": 4, "stride": 2, "resolution": 16, "num_workers": 0}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Five captioned 24-frame videos; video_000 is corrupt."""
    root = tmp_path_factory.mktemp("videos")
    write_dataset_folder(root, num_videos=5, corrupt=1)
    return root


def test_trains_on_a_folder_and_counts_the_corrupt_video(base_folder, tmp_path, videos):
    config = train_config(
        base_folder,
        tmp_path / "run",
        data={"kind": "folder", "video_folder": str(videos), **CLIPS},
        optim={"batch_size": 1, "max_steps": 5},
        logging={"report_to": "tensorboard", "every": 1},
    )
    trainer = Trainer(config)
    result = trainer.train()  # one whole epoch: the corrupt video is drawn once, replaced by another
    assert result["step"] == 5 and result["loss"] == result["loss"]
    assert sum(trainer.dataset.skipped.values()) >= 1
    assert list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))  # TensorBoard by default


def test_trains_on_the_webvid_layout(base_folder, tmp_path, videos):
    table = tmp_path / "webvid.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["videoid", "name", "page_dir"])
        writer.writerows([[f"video_{i:03d}", f"clip {i}", "000"] for i in range(1, 5)])
    config = train_config(
        base_folder,
        tmp_path / "run",
        data={"kind": "webvid", "csv": str(table), "video_folder": str(videos), **CLIPS},
        optim={"max_steps": 2},
    )
    assert Trainer(config).train()["step"] == 2


def test_webvid_csv_without_its_columns_fails_before_training(base_folder, tmp_path, videos):
    table = tmp_path / "bad.csv"
    table.write_text("id,caption\nvideo_001,a clip\n")
    config = train_config(
        base_folder, tmp_path / "run", data={"kind": "webvid", "csv": str(table), "video_folder": str(videos), **CLIPS}
    )
    with pytest.raises(ValueError, match="name|videoid|column"):
        Trainer(config)


@pytest.mark.slow
def test_tar_shards_stream_and_resume_exactly(base_folder, tmp_path, videos):
    shards = tmp_path / "shards"
    prepare_shards(videos, shards, shard_size=2, min_frames=4, progress=False)
    sections = dict(
        data={"kind": "shards", "shards": [str(shards)], **CLIPS},
        optim={"batch_size": 1, "max_steps": 4, "caption_dropout": 0.0},
        checkpoint={"every": 2, "resume_from": "latest"},
    )
    whole = Trainer(train_config(base_folder, tmp_path / "whole", **sections))
    whole.train()
    Trainer(train_config(base_folder, tmp_path / "split", **sections)).train(stop_after=3)
    resumed = Trainer(train_config(base_folder, tmp_path / "split", **sections))
    assert resumed.step == 2 and resumed.batch_in_epoch == 2
    resumed.train()
    a, b = whole.unet.motion_modules.state_dict(), resumed.unet.motion_modules.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_dataset_handed_to_the_trainer_trains_as_the_config_s_own(base_folder, tmp_path):
    """data.kind 'custom': the trainer takes clips from Python (as the world build gives it its renderings); the
    same clips train the same weights as when the config names them."""
    from animatediff.data.synthetic import MovingSquares

    named = Trainer(train_config(base_folder, tmp_path / "named"))
    named.train()
    config = train_config(base_folder, tmp_path / "given", data={"kind": "custom"})
    given = Trainer(config, dataset=MovingSquares(8, 4, 16, seed=config.seed))
    given.train()
    a, b = named.unet.motion_modules.state_dict(), given.unet.motion_modules.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="pass one as Trainer\\(config, dataset=...\\)|only then"):
        Trainer(train_config(base_folder, tmp_path / "none", data={"kind": "custom"}))
    with pytest.raises(ValueError, match="data.kind must be 'custom', not 'synthetic'"):
        Trainer(train_config(base_folder, tmp_path / "both"), dataset=MovingSquares(8, 4, 16))
