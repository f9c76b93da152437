"""Training on real video files through animatediff.data: a captioned folder, the WebVid layout, tar shards."""

from __future__ import annotations

import csv

import pytest
import torch

from animatediff.data import prepare_shards
from animatediff.data.synthetic import write_dataset_folder
from animatediff.errors import InputError
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


def loader_batches(dataset, workers, start_batch=0, batch_size=2):
    from animatediff.train.datasets import ClipLoader

    return list(ClipLoader(dataset, batch_size, workers, seed=0, rank=0, world_size=1).epoch(1, start_batch))


@pytest.mark.parametrize("kind", ["folder", "shards"])
def test_a_dataset_of_unreadable_videos_fails_in_one_line_from_a_worker(tmp_path, kind):
    from animatediff.data import ClipConfig, ShardDataset, ShardWriter, VideoFolderDataset
    from animatediff.data.synthetic import write_corrupt_video

    clip = ClipConfig(num_frames=4, stride=2, size=16)
    for i in range(3):
        write_corrupt_video(tmp_path / "videos" / f"v{i}.mp4", seed=i)
        (tmp_path / "videos" / f"v{i}.txt").write_text("broken")
    if kind == "folder":
        dataset = VideoFolderDataset(tmp_path / "videos", clip)
    else:
        with ShardWriter(tmp_path / "shards", shard_size=2) as writer:
            for i in range(3):
                writer.write(f"v{i}", {"mp4": (tmp_path / "videos" / f"v{i}.mp4").read_bytes(), "txt": b"broken"})
        dataset = ShardDataset(tmp_path / "shards", clip)
    with pytest.raises(InputError) as info:
        loader_batches(dataset, workers=1, batch_size=1)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message and "DataLoader worker" not in message
    assert message.startswith("21 ") and "in a row could not be read" in message
    assert "check the videos / data settings" in message


def test_shard_batches_and_resuming_do_not_depend_on_num_workers(tmp_path, videos):
    """What the trainer's loader gives from shards is the same with 0 or 2 workers, and a run stopped after three
    batches with one worker count goes on exactly with the other."""
    from animatediff.data import ClipConfig, ShardDataset

    shards = tmp_path / "shards"
    prepare_shards(videos, shards, shard_size=1, min_frames=4, progress=False)  # the four good videos

    def texts(workers, start_batch=0):
        dataset = ShardDataset(shards, ClipConfig(num_frames=4, stride=2, size=16), seed=5)
        return [b["text"] for b in loader_batches(dataset, workers, start_batch, batch_size=1)]

    reference = texts(0)
    assert len(reference) == 4 and texts(2) == reference
    assert texts(2, start_batch=3) == reference[3:] and texts(0, start_batch=1) == reference[1:]


def test_webvid_rows_without_their_video_are_counted_by_one_rank(tmp_path, videos):
    """Every rank reads the whole CSV; summed over the ranks (as the trainer all-reduces them), the rows whose
    video is absent count once."""
    from animatediff.train.datasets import build_dataset

    table = tmp_path / "webvid.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["videoid", "name", "page_dir"])
        writer.writerows([[f"video_{i:03d}", f"clip {i}", "000"] for i in range(1, 7)])  # 005 and 006 are absent
    data = {"kind": "webvid", "csv": str(table), "video_folder": str(videos), **CLIPS}
    config = train_config(tmp_path / "base", tmp_path / "run", data=data).data
    assert [build_dataset(config, 0, rank, 2).skipped["missing"] for rank in range(2)] == [2, 0]
