"""Map-style datasets: the WebVid CSV layout and a captioned folder; bad videos skipped and counted; clear errors
for bad layouts; determinism; DataLoader workers."""

import csv
import shutil
from unittest.mock import patch

import pytest
import torch
from torch.utils.data import DataLoader

from animatediff.data import ClipConfig, VideoFolderDataset, WebVidDataset, open_dataset
from animatediff.data.synthetic import write_corrupt_video, write_dataset_folder, write_synthetic_video
from animatediff.errors import InputError

CLIP = ClipConfig(num_frames=4, stride=2, size=16)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Six captioned videos: video_000 corrupt, video_001 too short (4 frames < the default 16), four good."""
    root = tmp_path_factory.mktemp("folder")
    write_dataset_folder(root, num_videos=6, corrupt=1, too_short=1, short_frames=4)
    return root


def write_webvid_csv(path, rows, columns=("videoid", "name", "page_dir")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def test_folder_dataset_items(folder):
    dataset = VideoFolderDataset(folder, CLIP)
    assert len(dataset) == 6
    item = dataset[3]
    assert set(item) == {"pixel_values", "text"}
    assert item["pixel_values"].shape == (4, 3, 16, 16) and item["pixel_values"].dtype == torch.float32
    assert -1 <= item["pixel_values"].min() and item["pixel_values"].max() <= 1
    assert item["text"] == "a square moving, clip 3"


def test_bad_videos_are_skipped_counted_and_replaced(folder, caplog):
    dataset = VideoFolderDataset(folder, ClipConfig(num_frames=16, stride=1, size=16))
    with caplog.at_level("WARNING", logger="animatediff.data"):
        items = [dataset[i] for i in range(len(dataset))]
    assert all(item["pixel_values"].shape == (16, 3, 16, 16) for item in items)
    # Items 0 and 1 were replaced by good videos (2..5); the first bad reads were counted and logged.
    assert {items[0]["text"], items[1]["text"]} <= {f"a square moving, clip {i}" for i in range(2, 6)}
    assert dataset.skipped["unreadable"] >= 1 and dataset.skipped["too_short"] >= 1
    assert "video_000.mp4" in caplog.text and "too_short" in caplog.text


def test_retries_are_bounded_and_end_in_one_clear_line(tmp_path):
    for i in range(3):
        write_corrupt_video(tmp_path / f"bad_{i}.mp4", seed=i)
        (tmp_path / f"bad_{i}.txt").write_text("broken")
    dataset = VideoFolderDataset(tmp_path, CLIP, max_retries=4)
    with pytest.raises(InputError, match="5 videos in a row could not be read") as info:
        dataset[0]
    message = str(info.value)
    assert "\n" not in message and "bad_" in message and "check the videos / data settings" in message
    assert dataset.skipped["unreadable"] == 1  # the item asked for; its failed replacements are other items'


def test_same_seed_same_items_new_epoch_new_clips(folder):
    config = ClipConfig(num_frames=4, stride=2, size=16)
    a, b = VideoFolderDataset(folder, config, seed=7), VideoFolderDataset(folder, config, seed=7)
    for i in (2, 4, 0):  # 0 is corrupt: its replacement is reproducible too
        assert torch.equal(a[i]["pixel_values"], b[i]["pixel_values"]) and a[i]["text"] == b[i]["text"]
    before = [a[i]["pixel_values"] for i in range(2, 6)]
    a.set_epoch(1)
    after = [a[i]["pixel_values"] for i in range(2, 6)]
    assert any(not torch.equal(x, y) for x, y in zip(before, after))
    b.set_epoch(1)
    assert all(torch.equal(x, b[i]["pixel_values"]) for x, i in zip(after, range(2, 6)))


def test_dataloader_with_two_workers_counts_skips_from_workers(folder):
    dataset = VideoFolderDataset(folder, ClipConfig(num_frames=16, stride=1, size=16), seed=1)
    loader = DataLoader(dataset, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    assert len(batches) == 3
    assert batches[0]["pixel_values"].shape == (2, 16, 3, 16, 16) and len(batches[0]["text"]) == 2
    # The workers hit the bad videos; the counts reach the dataset object the trainer holds.
    assert dataset.skipped["unreadable"] >= 1 and dataset.skipped["too_short"] >= 1
    single = [dataset[i]["pixel_values"] for i in range(6)]
    assert all(torch.equal(b["pixel_values"][j], single[2 * k + j]) for k, b in enumerate(batches) for j in range(2))


def test_webvid_layout(tmp_path, folder):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in (2, 3):
        shutil.copy(folder / f"video_{i:03d}.mp4", videos / f"{1000 + i}.mp4")
    (videos / "page_7").mkdir()  # the download scripts' <page_dir>/<videoid>.mp4 layout
    shutil.copy(folder / "video_004.mp4", videos / "page_7" / "1004.mp4")
    rows = [(1002, "two", "page_1"), (1003, "three", "page_1"), (1004, "four", "page_7"), (1009, "absent", "page_1")]
    dataset = WebVidDataset(write_webvid_csv(tmp_path / "results.csv", rows), videos, CLIP)
    assert len(dataset) == 3
    assert sorted(dataset[i]["text"] for i in range(3)) == ["four", "three", "two"]
    assert dataset.skipped["missing"] == 1
    assert isinstance(open_dataset(tmp_path / "results.csv", videos, CLIP), WebVidDataset)


def test_webvid_csv_missing_columns(tmp_path, folder):
    path = write_webvid_csv(tmp_path / "bad.csv", [(1, "x")], columns=("videoid", "caption"))
    with pytest.raises(ValueError, match=r"lacks the WebVid column\(s\) name, page_dir"):
        WebVidDataset(path, folder, CLIP)


def test_webvid_folder_without_its_videos(tmp_path, folder):
    path = write_webvid_csv(tmp_path / "results.csv", [(1, "x", "p"), (2, "y", "p")])
    with pytest.raises(ValueError, match="none of the 2 videos listed in .* is in"):
        WebVidDataset(path, folder, CLIP)
    with pytest.raises(FileNotFoundError, match="video folder"):
        WebVidDataset(path, tmp_path / "nowhere", CLIP)


def test_folder_without_videos(tmp_path):
    (tmp_path / "notes.txt").write_text("no videos here")
    with pytest.raises(ValueError, match="no videos in"):
        VideoFolderDataset(tmp_path, CLIP)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VideoFolderDataset(tmp_path / "nowhere", CLIP)


def test_folder_with_missing_captions_names_them(tmp_path):
    write_synthetic_video(tmp_path / "has.mp4")
    (tmp_path / "has.txt").write_text("caption")
    write_synthetic_video(tmp_path / "sub" / "lacks.mp4")
    with pytest.raises(ValueError, match=r"1 of 2 videos .* have no caption file .*sub/lacks\.mp4"):
        VideoFolderDataset(tmp_path, CLIP)


def test_open_dataset_picks_the_folder_layout(folder):
    assert isinstance(open_dataset(folder, clip=CLIP), VideoFolderDataset)


def test_a_bad_video_is_counted_once_per_pass(tmp_path):
    """A bad video counts when it is the item asked for, not again each time it is drawn as another item's
    replacement: over one pass, with or without workers, one corrupt video of five is one skip."""
    write_dataset_folder(tmp_path, num_videos=5, corrupt=1)
    replaced_by_the_bad_one = 0
    for seed in range(40):  # some seeds draw the corrupt video again as a replacement of the first one
        dataset = VideoFolderDataset(tmp_path, CLIP, seed=seed)
        with patch.object(dataset.counter, "add", wraps=dataset.counter.add) as add:
            [dataset[i] for i in range(len(dataset))]
        replaced_by_the_bad_one += add.call_count > 1
        assert dataset.skipped == {"missing": 0, "unreadable": 1, "corrupt": 0, "too_short": 0, "bad_shard": 0}
    assert replaced_by_the_bad_one  # the retry path met the corrupt video again for some seeds
    dataset = VideoFolderDataset(tmp_path, CLIP, seed=11)
    assert len(list(DataLoader(dataset, batch_size=1, num_workers=2))) == 5
    assert dataset.skipped["unreadable"] == 1
