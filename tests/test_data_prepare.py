"""`prepare` leaves nothing stale, partial or silent: it refuses a folder holding anything unless told to overwrite
(and then removes the old shards and index first), writes its index last and only after a whole run, and with
--quiet prints nothing at all."""

import json
import logging
import sys

import pytest

from animatediff.cli import main
from animatediff.data import ClipConfig, ShardDataset, prepare_shards
from animatediff.data import prepare as prepare_module
from animatediff.data.synthetic import write_corrupt_video, write_dataset_folder

CLIP = ClipConfig(num_frames=4, stride=2, size=16)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Six captioned videos: video_000 corrupt, video_001 too short (4 frames), four good (24 frames)."""
    root = tmp_path_factory.mktemp("videos")
    write_dataset_folder(root, num_videos=6, corrupt=1, too_short=1, short_frames=4)
    return root


def keys(folder):
    return sorted(sample["text"] for sample in ShardDataset(folder, CLIP))


def test_prepare_refuses_a_folder_that_is_not_empty_and_overwrites_when_told(videos, tmp_path):
    out = tmp_path / "shards"
    first = prepare_shards(videos, out, shard_size=1, progress=False)  # four shards
    assert len(first.shards) == 4
    with pytest.raises(ValueError, match=rf"output folder {out} is not empty.*--overwrite"):
        prepare_shards(videos, out, shard_size=3, progress=False)
    assert sorted(p.name for p in out.iterdir())[:4] == [f"shard-00000{i}.tar" for i in range(4)]  # untouched
    second = prepare_shards(videos, out, shard_size=3, progress=False, overwrite=True)  # two shards
    assert sorted(p.name for p in out.iterdir()) == ["shard-000000.tar", "shard-000001.tar", "shards.json"]
    assert json.loads((out / "shards.json").read_text())["samples"] == second.written == 4
    assert keys(out) == [f"a square moving, clip {i}" for i in range(2, 6)]


def test_training_reads_the_shards_the_index_lists_not_stale_ones(videos, tmp_path):
    """An older, bigger run's shards left beside a newer index (copied there, say) are not read."""
    out = tmp_path / "shards"
    prepare_shards(videos, out, shard_size=1, progress=False)
    (out / "shard-000004.tar").write_bytes((out / "shard-000000.tar").read_bytes())
    (out / "shard-000005.tar").write_bytes((out / "shard-000001.tar").read_bytes())
    assert keys(out) == [f"a square moving, clip {i}" for i in range(2, 6)]


def test_the_cli_overwrites_only_with_overwrite(videos, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prepare", str(videos), str(out), "--quiet"]) == 0
    (out / "notes.txt").write_text("mine")
    assert main(["prepare", str(videos), str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "--overwrite" in err
    assert main(["prepare", str(videos), str(out), "--quiet", "--overwrite", "--shard-size", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "shard-000000.tar", "shard-000001.tar", "shards.json"]


def test_a_run_without_a_usable_video_leaves_nothing(tmp_path):
    for i in range(2):
        write_corrupt_video(tmp_path / "bad" / f"v{i}.mp4", seed=i)
        (tmp_path / "bad" / f"v{i}.txt").write_text("broken")
    with pytest.raises(ValueError, match="none of the 2 videos .* could be used .*2 unreadable"):
        prepare_shards(tmp_path / "bad", tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="could be used"):
        prepare_shards(tmp_path / "bad", tmp_path / "empty", progress=False)
    assert list((tmp_path / "empty").iterdir()) == []  # no empty shards.json


@pytest.mark.parametrize("interrupt", [RuntimeError, KeyboardInterrupt])
def test_a_run_that_fails_midway_leaves_no_index_and_no_shard(videos, tmp_path, monkeypatch, interrupt):
    load = prepare_module._load_task

    def failing(task):
        if task[0].name == "video_004.mp4":
            raise interrupt("the disk went away")
        return load(task)

    monkeypatch.setattr(prepare_module, "_load_task", failing)
    (tmp_path / "out").mkdir()
    with pytest.raises(interrupt):
        prepare_shards(videos, tmp_path / "out", shard_size=1, progress=False)  # two shards were written by then
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(interrupt):
        prepare_shards(videos, tmp_path / "new", shard_size=1, progress=False)
    assert not (tmp_path / "new").exists()


def test_an_output_under_a_regular_file_is_one_line(videos, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    for out in (tmp_path / "file", tmp_path / "file" / "shards"):
        with pytest.raises(ValueError, match=rf"cannot write shards to {out}: {tmp_path / 'file'} is a file"):
            prepare_shards(videos, out, progress=False)
        assert main(["prepare", str(videos), str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("animatediff prepare: error: cannot write shards")
    assert main(["prepare", str(tmp_path / "file"), str(tmp_path / "out")]) == 2
    assert "is a file, not a folder of videos" in capsys.readouterr().err


def test_quiet_prints_nothing_at_all(videos, tmp_path, capfd):
    # Log lines reach the terminal as they would outside pytest, which otherwise captures them itself.
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger("animatediff.data").addHandler(handler)
    try:
        assert main(["prepare", str(videos), str(tmp_path / "out"), "--quiet"]) == 0
        assert capfd.readouterr() == ("", "")
        assert main(["prepare", str(videos), str(tmp_path / "loud")]) == 0
        out, err = capfd.readouterr()
    finally:
        logging.getLogger("animatediff.data").removeHandler(handler)
    assert "wrote 4 clips" in out and "skipped video (unreadable)" in err and "prepare: 100%" in err
