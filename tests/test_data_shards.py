"""Tar shards: `prepare` round trip (library and CLI), streaming split across workers and ranks, determinism,
resuming mid-epoch, bad samples and shards skipped and counted."""

import csv
import itertools
import json
import tarfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from animatediff.cli import main
from animatediff.data import ClipConfig, ShardDataset, ShardWriter, VideoReader, open_dataset, prepare_shards
from animatediff.data.synthetic import write_corrupt_video, write_dataset_folder, write_synthetic_video
from animatediff.data.tar_members import iter_tar_samples

CLIP = ClipConfig(num_frames=4, stride=2, size=16)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Seven captioned videos: one corrupt, one too short (4 frames), five good (24 frames, 32×32)."""
    root = tmp_path_factory.mktemp("videos")
    write_dataset_folder(root, num_videos=7, corrupt=1, too_short=1, short_frames=4)
    return root


@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory):
    return write_synthetic_video(tmp_path_factory.mktemp("one") / "v.mp4", num_frames=24).read_bytes()


def write_shards(out_dir, video_bytes, num_samples, shard_size):
    """Shards whose samples share one video but carry unique captions `clip N`."""
    with ShardWriter(out_dir, shard_size) as writer:
        for i in range(num_samples):
            writer.write(f"s{i:04d}", {"mp4": video_bytes, "txt": f"clip {i}".encode()})
    return out_dir


def texts(items):
    return [t for item in items for t in (item["text"] if isinstance(item["text"], list) else [item["text"]])]


def test_prepare_round_trip(folder, tmp_path):
    report = prepare_shards(folder, tmp_path / "shards", shard_size=2, progress=False)
    assert report.written == 5 and report.skipped == {"unreadable": 1, "too_short": 1}
    assert [p.name for p in report.shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert not list((tmp_path / "shards").glob("*.tmp"))
    index = json.loads((tmp_path / "shards" / "shards.json").read_text())
    assert [s["samples"] for s in index["shards"]] == [2, 2, 1] and index["samples"] == 5
    # Members follow the WebDataset convention and keep the bytes of the source videos.
    with tarfile.open(report.shards[0]) as tar:
        assert tar.getnames() == ["video_002.mp4", "video_002.txt", "video_003.mp4", "video_003.txt"]
        assert tar.extractfile("video_002.mp4").read() == (folder / "video_002.mp4").read_bytes()
    dataset = ShardDataset(tmp_path / "shards", CLIP, shuffle=False)
    items = list(dataset)
    assert texts(items) == [f"a square moving, clip {i}" for i in range(2, 7)]
    assert all(item["pixel_values"].shape == (4, 3, 16, 16) for item in items)
    assert dataset.num_samples() == 5 and dataset.skipped == dict.fromkeys(dataset.skipped, 0)


def test_prepare_resizes_and_reads_webvid_csv(folder, tmp_path):
    with open(tmp_path / "results.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(
            [
                ("videoid", "name", "page_dir"),
                ("video_002", "two", "p"),
                ("video_005", "five", "p"),
                ("gone", "absent", "p"),
            ]
        )
    report = prepare_shards(
        folder, tmp_path / "shards", csv_path=tmp_path / "results.csv", resize=16, min_frames=16, progress=False
    )
    assert report.written == 2 and report.skipped == {"missing": 1}
    samples = list(iter_tar_samples(report.shards[0]))
    assert [s["txt"] for s in samples] == [b"two", b"five"]
    with VideoReader(samples[0]["mp4"]) as reader:
        assert (reader.info.height, reader.info.width, reader.info.num_frames) == (16, 16, 24)


def test_prepare_with_workers_matches_and_keeps_other_containers(folder, tmp_path):
    serial = prepare_shards(folder, tmp_path / "serial", shard_size=2, resize=16, progress=False)
    pooled = prepare_shards(folder, tmp_path / "pooled", shard_size=2, resize=16, num_workers=2, progress=False)
    assert pooled.skipped == serial.skipped
    for a, b in zip(serial.shards, pooled.shards, strict=True):
        assert list(iter_tar_samples(a)) == list(iter_tar_samples(b))
    other = tmp_path / "mkv"
    other.mkdir()
    (other / "clip.mkv").write_bytes(write_synthetic_video(tmp_path / "clip.mkv", num_frames=20).read_bytes())
    (other / "clip.txt").write_text("in matroska")
    report = prepare_shards(other, tmp_path / "mkv_shards", progress=False)
    assert set(next(iter_tar_samples(report.shards[0]))) == {"__key__", "mkv", "txt"}
    assert texts(ShardDataset(report.shards, CLIP)) == ["in matroska"]


def test_prepare_cli(folder, tmp_path, capsys):
    assert main(["prepare", str(folder), str(tmp_path / "out"), "--shard-size", "3"]) == 0
    out = capsys.readouterr()
    assert "wrote 5 clips in 2 shards" in out.out and "1 unreadable, 1 too_short" in out.out
    assert "prepare" in out.err  # the progress bar
    assert main(["prepare", str(folder), str(tmp_path / "quiet"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    (tmp_path / "empty").mkdir()
    assert main(["prepare", str(tmp_path / "empty"), str(tmp_path / "o2")]) == 2
    assert "error: no videos in" in capsys.readouterr().err


@pytest.mark.parametrize("num_shards", [8, 2])  # enough shards to deal out, and fewer shards than readers
def test_two_ranks_two_workers_split_without_duplicates(video_bytes, tmp_path, num_shards):
    shards = write_shards(tmp_path / "shards", video_bytes, num_samples=24, shard_size=24 // num_shards)
    seen = []
    for rank in range(2):
        dataset = ShardDataset(shards, CLIP, seed=3, rank=rank, world_size=2)
        seen.append(texts(DataLoader(dataset, batch_size=None, num_workers=2)))
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(f"clip {i}" for i in range(24))
    assert abs(len(seen[0]) - len(seen[1])) <= 3


def test_stream_is_deterministic_and_changes_with_the_epoch(video_bytes, tmp_path):
    shards = write_shards(tmp_path / "shards", video_bytes, num_samples=12, shard_size=3)
    first, second = list(ShardDataset(shards, CLIP, seed=5)), list(ShardDataset(shards, CLIP, seed=5))
    assert texts(first) == texts(second)
    assert all(torch.equal(a["pixel_values"], b["pixel_values"]) for a, b in zip(first, second))
    assert texts(first) != [f"clip {i}" for i in range(12)]  # shuffled
    other = ShardDataset(shards, CLIP, seed=5)
    other.set_epoch(1)
    assert texts(list(other)) != texts(first) and sorted(texts(list(other))) == sorted(texts(first))


def test_resume_continues_the_same_stream(video_bytes, tmp_path):
    shards = write_shards(tmp_path / "shards", video_bytes, num_samples=20, shard_size=2)

    def batches(dataset):
        return list(DataLoader(dataset, batch_size=2, num_workers=2))

    full = ShardDataset(shards, CLIP, seed=9, rank=1, world_size=2, batch_size=2)
    full.set_epoch(2)
    reference = batches(full)
    resumed = ShardDataset(shards, CLIP, seed=9, rank=1, world_size=2)
    resumed.set_epoch(2)
    resumed.set_position(epoch=2, consumed=3 * 2, batch_size=2)  # three batches were trained on before the stop
    rest = batches(resumed)
    assert [b["text"] for b in rest] == [b["text"] for b in reference[3:]]
    assert all(torch.equal(a["pixel_values"], b["pixel_values"]) for a, b in zip(rest, reference[3:]))
    resumed.set_epoch(3)  # the position only applies to its own epoch
    assert len(batches(resumed)) == len(reference)
    with pytest.raises(ValueError, match="multiple of batch_size"):
        resumed.set_position(epoch=0, consumed=3, batch_size=2)


def test_bad_samples_and_shards_are_skipped_and_counted(video_bytes, tmp_path):
    bad = write_corrupt_video(tmp_path / "bad.mp4").read_bytes()
    short = write_synthetic_video(tmp_path / "short.mp4", num_frames=2).read_bytes()
    with ShardWriter(tmp_path / "shards", shard_size=10) as writer:
        writer.write("good", {"mp4": video_bytes, "txt": b"good"})
        writer.write("corrupt", {"mp4": bad, "txt": b"corrupt"})
        writer.write("short", {"mp4": short, "txt": b"short"})
        writer.write("nocaption", {"mp4": video_bytes})
        writer.write("good2", {"mp4": video_bytes, "txt": b"good2"})
    shard = tmp_path / "shards" / "shard-000000.tar"
    with tarfile.open(shard) as tar:  # a copy cut inside the second sample's video
        cut = tar.getmember("corrupt.mp4").offset_data + 100
    (tmp_path / "shards" / "shard-000001.tar").write_bytes(shard.read_bytes()[:cut])
    (tmp_path / "shards" / "shards.json").unlink()  # read every .tar in the folder, the cut copy too
    dataset = ShardDataset(tmp_path / "shards", CLIP, shuffle=False)
    items = list(DataLoader(dataset, batch_size=None, num_workers=2))
    # Four complete samples in the whole shard, one before the cut in the copy; the corrupt and the short one are
    # replaced by good samples near them, so every place in the stream holds a clip.
    assert len(items) == 5 and set(texts(items)) == {"good", "good2"}
    assert dataset.skipped == {"missing": 1, "unreadable": 1, "corrupt": 0, "too_short": 1, "bad_shard": 1}


def test_repeat_streams_past_the_epoch(video_bytes, tmp_path):
    shards = write_shards(tmp_path / "shards", video_bytes, num_samples=4, shard_size=2)
    items = list(itertools.islice(ShardDataset(shards, CLIP, repeat=True), 10))
    assert len(items) == 10 and sorted(texts(items[:4])) == sorted(texts(items[4:8]))


def test_shard_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shard file or folder"):
        ShardDataset(tmp_path / "missing", CLIP)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .tar shards in"):
        ShardDataset(str(tmp_path / "empty" / "*.tar"), CLIP)
    with pytest.raises(ValueError, match="rank 2 is outside world_size 2"):
        ShardDataset(tmp_path, CLIP, rank=2, world_size=2) if list(tmp_path.glob("*.tar")) else ShardDataset(
            write_shards(tmp_path / "s", b"x", 1, 1), CLIP, rank=2, world_size=2
        )


def test_open_dataset_picks_shards(video_bytes, tmp_path):
    shards = write_shards(tmp_path / "shards", video_bytes, num_samples=2, shard_size=1)
    assert isinstance(open_dataset(shards, clip=CLIP), ShardDataset)
    assert isinstance(open_dataset(str(shards / "shard-*.tar"), clip=CLIP), ShardDataset)


def test_resume_with_repeat_crosses_epochs(video_bytes, tmp_path):
    shards = write_shards(tmp_path / "shards", video_bytes, num_samples=20, shard_size=2)  # 10 per rank

    def first_batches(dataset, n):
        return [b["text"] for b in itertools.islice(iter(DataLoader(dataset, batch_size=2, num_workers=2)), n)]

    reference = first_batches(ShardDataset(shards, CLIP, seed=4, rank=0, world_size=2, repeat=True, batch_size=2), 12)
    resumed = ShardDataset(shards, CLIP, seed=4, rank=0, world_size=2, repeat=True)
    resumed.set_position(epoch=0, consumed=7 * 2, batch_size=2)
    assert first_batches(resumed, 5) == reference[7:12]


def test_set_epoch_reaches_persistent_workers(video_bytes, tmp_path):
    shards = write_shards(tmp_path / "shards", video_bytes, num_samples=12, shard_size=2)
    dataset = ShardDataset(shards, CLIP, seed=2)
    loader = DataLoader(dataset, batch_size=None, num_workers=2, persistent_workers=True)
    epoch0 = texts(loader)
    dataset.set_epoch(1)
    epoch1 = texts(loader)
    fresh = ShardDataset(shards, CLIP, seed=2)
    fresh.set_epoch(1)
    assert epoch1 == texts(DataLoader(fresh, batch_size=None, num_workers=2)) and epoch1 != epoch0


def cut_points(shard):
    """Byte counts to keep of a 4-sample shard, each cutting it short in a different place, with the number of
    samples read before the cut and how many of them are whole (video and caption)."""
    with tarfile.open(shard) as tar:
        members = tar.getmembers()  # s0000.mp4, s0000.txt, s0001.mp4, ...
    second_caption, third_video, last = members[3], members[4], members[-1]
    return {
        "inside a member's data": (third_video.offset_data + 100, 2, 2),
        "inside a header": (second_caption.offset + 100, 2, 1),
        "between two members of a sample": (second_caption.offset, 2, 1),
        "between two samples": (third_video.offset, 2, 2),
        "before the end-of-archive block": (last.offset_data + 512, 4, 4),
    }


@pytest.mark.parametrize(
    "where",
    [
        "inside a member's data",
        "inside a header",
        "between two members of a sample",
        "between two samples",
        "before the end-of-archive block",
    ],
)
def test_a_shard_cut_short_gives_its_samples_before_the_cut_and_counts_as_bad(video_bytes, tmp_path, where):
    whole = write_shards(tmp_path / "whole", video_bytes, num_samples=4, shard_size=4) / "shard-000000.tar"
    keep, read, whole_samples = cut_points(whole)[where]
    cut = tmp_path / "cut" / "shard-000000.tar"
    cut.parent.mkdir()
    cut.write_bytes(whole.read_bytes()[:keep])
    samples = []
    with pytest.raises(tarfile.ReadError, match="cut short|unexpected end"):
        for sample in iter_tar_samples(cut):
            samples.append(sample)
    assert [s["__key__"] for s in samples] == [f"s{i:04d}" for i in range(read)]
    assert sum("txt" in s for s in samples) == whole_samples
    dataset = ShardDataset(cut, CLIP, shuffle=False)
    assert texts(dataset) == [f"clip {i}" for i in range(whole_samples)]
    # The cut is one bad shard; the sample it took the caption of is not counted again as missing one.
    assert dataset.skipped == {"missing": 0, "unreadable": 0, "corrupt": 0, "too_short": 0, "bad_shard": 1}


def test_a_whole_shard_is_not_bad(video_bytes, tmp_path):
    shards = write_shards(tmp_path / "shards", video_bytes, num_samples=3, shard_size=3)
    assert [s["txt"] for s in iter_tar_samples(shards / "shard-000000.tar")] == [b"clip 0", b"clip 1", b"clip 2"]
    dataset = ShardDataset(shards, CLIP)
    assert sorted(texts(dataset)) == ["clip 0", "clip 1", "clip 2"] and sum(dataset.skipped.values()) == 0


def test_a_bad_shard_is_counted_once_however_many_read_it(video_bytes, tmp_path):
    """One shard cut short and fewer shards than readers: every worker, and every rank, reads the shard, and
    one of them counts it."""
    whole = write_shards(tmp_path / "whole", video_bytes, num_samples=6, shard_size=6) / "shard-000000.tar"
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[: cut_points(whole)["inside a member's data"][0]])
    dataset = ShardDataset(cut, CLIP)
    assert sorted(texts(DataLoader(dataset, batch_size=None, num_workers=2))) == ["clip 0", "clip 1"]
    assert dataset.skipped["bad_shard"] == 1
    ranks = [ShardDataset(cut, CLIP, rank=rank, world_size=2) for rank in range(2)]
    assert sorted(t for rank in ranks for t in texts(DataLoader(rank, batch_size=None, num_workers=2))) == [
        "clip 0",
        "clip 1",
    ]
    assert sum(rank.skipped["bad_shard"] for rank in ranks) == 1


def test_a_folder_with_an_index_reads_the_shards_it_lists(video_bytes, tmp_path, caplog):
    shards = write_shards(tmp_path / "shards", video_bytes, num_samples=6, shard_size=2)
    (shards / "shard-000009.tar").write_bytes((shards / "shard-000000.tar").read_bytes())  # not in the index
    with caplog.at_level("WARNING", logger="animatediff.data"):
        dataset = ShardDataset(shards, CLIP)
    assert [Path(s).name for s in dataset.shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert sorted(texts(dataset)) == sorted(f"clip {i}" for i in range(6)) and dataset.num_samples() == 6
    assert "shard-000009.tar" in caplog.text
    assert isinstance(open_dataset(shards, clip=CLIP), ShardDataset)
    (shards / "shard-000001.tar").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 shard\(s\) listed in .*shards.json are missing: shard-000001"):
        ShardDataset(shards, CLIP)
    (shards / "shards.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a shard index"):
        ShardDataset(shards, CLIP)
