"""Input videos for video-to-video (`io/video_input.py`): each kind of source, the frames a stride takes, the fit to
the pipeline's size, and bad input as one-line input errors."""

import numpy as np
import pytest
from PIL import Image

from animatediff.errors import InputError, InputNotFound
from animatediff.io.video import save_video
from animatediff.io.video_input import fit_frames, read_video_input, video_frames

# Frame i is one flat colour, so that any frame read back says which frame it was.
COLOURS = np.array([[i / 11, 1 - i / 11, (i % 3) / 2] for i in range(12)], dtype=np.float32)


def _clip(frames: int = 12, height: int = 24, width: int = 20) -> np.ndarray:
    return np.broadcast_to(COLOURS[:frames, None, None, :], (frames, height, width, 3)).copy()


def _which(frames: np.ndarray) -> list[int]:
    """The index of the flat colour nearest each frame's mean."""
    means = frames.mean(axis=(1, 2))
    return [int(np.argmin(np.linalg.norm(COLOURS - m, axis=1))) for m in means]


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".webp", ".npy"])
def test_files_give_the_frames_a_stride_takes(tmp_path, suffix):
    path = save_video(_clip(), tmp_path / f"in{suffix}", fps=8)
    frames = read_video_input(path, 4, stride=3)
    assert frames.shape == (4, 24, 20, 3) and frames.dtype == np.float32
    assert _which(frames) == [0, 3, 6, 9]
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    assert _which(read_video_input(path, 12)) == list(range(12))


def test_a_folder_of_frames_is_read_in_name_order_numbers_by_value(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    clip = (_clip(4) * 255).round().astype(np.uint8)
    for i, name in enumerate(["f1.png", "f2.jpg", "f10.PNG", "f11.jpeg"]):  # plain sorting puts f10 before f2
        Image.fromarray(clip[i]).save(folder / name, format="JPEG" if "jp" in name else "PNG")
    (folder / "notes.txt").write_text("not a frame")
    assert _which(read_video_input(folder, 4)) == [0, 1, 2, 3]
    assert _which(read_video_input(folder, 2, stride=2)) == [0, 2]


@pytest.mark.parametrize(("names", "gap"), [(["1", "2", "3"], None), (["0000", "0001", "0002"], None),
                                            (["0", "1", "3"], "frame 3 follows frame 1")])  # fmt: skip
def test_frames_named_by_number_alone_are_read_only_without_gaps(tmp_path, names, gap):
    folder = tmp_path / "frames"
    folder.mkdir()
    clip = (_clip(3) * 255).round().astype(np.uint8)
    for i, name in enumerate(names):
        Image.fromarray(clip[i]).save(folder / f"{name}.png")
    if gap is None:
        assert _which(read_video_input(folder, 3)) == [0, 1, 2]
    else:
        with pytest.raises(InputError, match=gap):
            read_video_input(folder, 3)


def test_frames_in_memory_uint8_or_float_and_the_stride():
    clip = _clip()
    np.testing.assert_array_equal(read_video_input(clip, 3, stride=5), clip[[0, 5, 10]])
    as_bytes = (clip * 255).round().astype(np.uint8)
    np.testing.assert_allclose(read_video_input(as_bytes, 12), clip, atol=1 / 255)


def test_fit_scales_to_cover_and_crops_the_center():
    """A 20 × 40 frame (height × width) for 16 × 16: scaled to 16 × 32, the middle 16 columns kept."""
    frame = np.zeros((1, 20, 40, 3), dtype=np.float32)
    frame[:, :, :10] = [1, 0, 0]  # the left quarter red, the right quarter blue: both cropped away
    frame[:, :, 30:] = [0, 0, 1]
    frame[:, :, 10:30] = [0, 1, 0]
    fitted = fit_frames(frame, 16, 16)
    assert fitted.shape == (1, 16, 16, 3)
    np.testing.assert_allclose(fitted[0, :, 1:-1], np.broadcast_to([0, 1, 0], (16, 14, 3)), atol=1e-6)
    tall = fit_frames(np.ones((2, 40, 20, 3), dtype=np.float32), 8, 16)  # width is the side that covers
    assert tall.shape == (2, 8, 16, 3)
    np.testing.assert_allclose(tall, 1.0, atol=1e-6)
    same = _clip(2, 16, 16)
    np.testing.assert_array_equal(fit_frames(same, 16, 16), same)
    assert video_frames(_clip(), 2, 16, 16, stride=4).shape == (2, 16, 16, 3)


def test_too_few_frames_say_how_many_there_are_and_what_fits(tmp_path):
    path = save_video(_clip(10), tmp_path / "short.gif", fps=8)
    with pytest.raises(InputError) as err:
        read_video_input(path, 16, options=("--frames", "--video-stride"))
    assert str(err.value) == f"{path} has 10 frames, but 16 frames at stride 1 need 16; ask for --frames 10 or fewer"
    with pytest.raises(InputError) as err:
        read_video_input(path, 4, stride=4, options=("--frames", "--video-stride"))
    assert str(err.value) == (
        f"{path} has 10 frames, but 4 frames at stride 4 need 13; ask for --frames 3 or fewer or --video-stride 3 "
        "or less"
    )
    with pytest.raises(InputError, match="the video has 10 frames, but 11 frames at stride 1 need 11"):
        read_video_input(_clip(10), 11)


def test_bad_sources_are_one_line_input_errors(tmp_path):
    with pytest.raises(InputNotFound, match="input video not found"):
        read_video_input(tmp_path / "nothing.mp4", 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no .png, .jpg, .jpeg images"):
        read_video_input(tmp_path / "empty", 4)
    for name in ("broken.mp4", "broken.gif", "broken.npy"):
        (tmp_path / name).write_bytes(b"not a video at all" * 10)
        with pytest.raises(InputError, match="cannot decode|not a readable") as err:
            read_video_input(tmp_path / name, 2)
        assert "\n" not in str(err.value)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("RGB", (8, 8)).save(mixed / "0.png")
    Image.new("RGB", (8, 6)).save(mixed / "1.png")
    with pytest.raises(InputError, match="frames differ in size"):
        read_video_input(mixed, 2)
    for bad, message in [
        (np.zeros((4, 8, 8)), r"shape \(frames, height, width, 3\)"),
        (np.full((2, 8, 8, 3), np.nan), r"finite and in \[0, 1\]"),
        (np.zeros((2, 8, 8, 3), dtype=np.int64), "uint8 or float"),
    ]:
        with pytest.raises(InputError, match=message):
            read_video_input(bad, 1)
    with pytest.raises(InputError, match="num_frames must be an integer of at least 1"):
        read_video_input(_clip(), 0)
