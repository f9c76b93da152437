"""Outputs are whole or absent: the atomic file and folder writers, and every video format written through them."""

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animatediff.errors import InputError
from animatediff.io import video as video_module
from animatediff.io.atomic import write_atomic, write_folder_atomic
from animatediff.io.video import check_finite, save_video

FRAMES = np.random.default_rng(0).random((3, 8, 8, 3), dtype=np.float32)


def listing(folder) -> dict[str, bytes | None]:  # noqa: ANN001
    """Every path under `folder` (hidden temporaries included), with the bytes of each file."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_file_write_leaves_the_old_file_and_nothing_else(tmp_path, failure):
    (tmp_path / "out.bin").write_bytes(b"old")
    before = listing(tmp_path)

    def write(tmp):  # noqa: ANN001
        tmp.write_bytes(b"half of the new")
        raise failure

    with pytest.raises(type(failure)):
        write_atomic(tmp_path / "out.bin", write)
    assert listing(tmp_path) == before


def test_two_writers_of_one_path_leave_one_whole_video(tmp_path, monkeypatch):
    """Two saves of one path at once, their writes interleaved chunk by chunk (each writer last on every other
    chunk), leave the whole of one video, never a file spliced from both."""
    videos = {"a": FRAMES, "b": 1 - FRAMES}
    expected = {save_video(v, tmp_path / f"{k}.gif").read_bytes() for k, v in videos.items()}
    order = [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2), ("b", 3), ("a", 3)]
    encode, turn = Image.Image.save, threading.Condition()
    done = []

    def interleaved(self, fp, format=None, **params):  # noqa: A002, ANN001
        buffer = io.BytesIO()
        encode(self, buffer, format=format or Image.registered_extensions()[Path(fp).suffix], **params)
        data, me = buffer.getvalue(), threading.current_thread().name
        step = len(data) // 4 + 1
        with open(fp, "wb") as f:
            for chunk in range(4):
                with turn:
                    assert turn.wait_for(lambda chunk=chunk: order[len(done)] == (me, chunk), timeout=10)
                    f.write(data[chunk * step : (chunk + 1) * step])
                    f.flush()
                    done.append((me, chunk))
                    turn.notify_all()

    monkeypatch.setattr(Image.Image, "save", interleaved)
    threads = [threading.Thread(target=save_video, args=(v, tmp_path / "out.gif"), name=k) for k, v in videos.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done == order
    assert (tmp_path / "out.gif").read_bytes() in expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "b.gif", "out.gif"]


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    old = tmp_path / "frames"
    old.mkdir()
    for name in ("0000.png", "0001.png", "0002.png"):
        (old / name).write_bytes(b"old")
    before = listing(tmp_path)

    def interrupted(tmp):  # noqa: ANN001
        (tmp / "0000.png").write_bytes(b"new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_folder_atomic(old, interrupted)
    assert listing(tmp_path) == before

    write_folder_atomic(old, lambda tmp: (tmp / "0000.png").write_bytes(b"new"))
    assert listing(tmp_path) == {"frames": None, "frames/0000.png": b"new"}  # the old frames 1 and 2 are gone


def test_a_folder_of_other_files_or_a_file_is_never_replaced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for here in (".", "..", str(tmp_path)):
        with pytest.raises(InputError, match="name a new folder"):
            write_folder_atomic(here, lambda tmp: None)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"precious")
    (tmp_path / "a-file").write_bytes(b"x")
    before = listing(tmp_path)
    with pytest.raises(InputError, match="holding other files"):
        write_folder_atomic(tmp_path / "photos", lambda tmp: None, replaceable=lambda f: False)
    with pytest.raises(InputError, match="a file of that name is there"):
        write_folder_atomic(tmp_path / "a-file", lambda tmp: None)
    with pytest.raises(InputError, match="a folder of that name is there"):
        write_atomic(tmp_path / "photos", lambda tmp: None)
    with pytest.raises(InputError, match="a-file is a file, not a folder"):
        write_atomic(tmp_path / "a-file" / "out.gif", lambda tmp: None)
    assert listing(tmp_path) == before


@pytest.mark.parametrize("name", ["out.gif", "out.webp", "out.npy", "out.mp4", "frames"])
def test_every_format_is_written_whole_and_an_interrupt_leaves_the_old_output(tmp_path, monkeypatch, name):
    path = save_video(FRAMES, tmp_path / name)
    before = listing(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left beside it

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    if name == "frames":  # interrupted after the first PNG
        save = Image.Image.save
        calls = iter(range(99))
        monkeypatch.setattr(Image.Image, "save", lambda *a, **k: save(*a, **k) if next(calls) < 1 else interrupted())
    else:  # interrupted halfway through the file
        writer = video_module.WRITERS[path.suffix]

        def half(frames, tmp, fps):  # noqa: ANN001
            writer(frames, tmp, fps)
            tmp.write_bytes(tmp.read_bytes()[:100])
            interrupted()

        monkeypatch.setitem(video_module.WRITERS, path.suffix, half)
    with pytest.raises(KeyboardInterrupt):
        save_video(1 - FRAMES, path)
    assert listing(tmp_path) == before


def test_a_png_folder_replaces_an_earlier_one_and_spares_other_folders(tmp_path):
    save_video(np.zeros((4, 8, 8, 3), np.float32), tmp_path / "frames")
    save_video(FRAMES[:2], tmp_path / "frames")
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["0000.png", "0001.png"]
    (tmp_path / "frames" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holding other files"):
        save_video(FRAMES, tmp_path / "frames")
    assert (tmp_path / "frames" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_frames_that_are_not_finite_are_refused(tmp_path, bad):
    frames = FRAMES.copy()
    frames[1, :2] = bad
    message = f"the frames hold 48 of 576 values that are not finite.*nothing written to {tmp_path / 'out.gif'}$"
    with pytest.raises(InputError, match=message):
        check_finite(frames, tmp_path / "out.gif")
    check_finite(FRAMES, tmp_path / "out.gif")
