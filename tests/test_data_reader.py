"""The PyAV reader returns the frames asked for, with and without seeking, and fails with a reason."""

import numpy as np
import pytest

from animatediff.data.synthetic import (
    decode_frame_index,
    index_coded_frames,
    write_corrupt_video,
    write_synthetic_video,
    write_video,
)
from animatediff.data.video_reader import VideoReader, VideoReadError, read_video_frames


@pytest.fixture(scope="module")
def coded_video(tmp_path_factory):
    """100 index-coded frames, a keyframe every 12: most clips start between keyframes."""
    return write_synthetic_video(tmp_path_factory.mktemp("reader") / "coded.mp4", num_frames=100, index_coded=True)


def decoded_indices(frames: np.ndarray) -> list[int]:
    return [decode_frame_index(frame) for frame in frames]


def test_index_coding_survives_the_codec(coded_video):
    frames = read_video_frames(coded_video, range(100), seek=False)
    assert frames.shape == (100, 32, 32, 3) and frames.dtype == np.uint8
    assert decoded_indices(frames) == list(range(100))


@pytest.mark.parametrize("start,stride", [(0, 4), (13, 4), (50, 3), (37, 1), (88, 1)])
@pytest.mark.parametrize("seek", [True, False])
def test_reads_the_frames_of_a_strided_clip(coded_video, start, stride, seek):
    indices = list(range(start, min(100, start + 16 * stride), stride))
    assert decoded_indices(read_video_frames(coded_video, indices, seek=seek)) == indices


def test_order_and_repeats_are_kept(coded_video):
    indices = [40, 7, 7, 99, 12]
    assert decoded_indices(read_video_frames(coded_video, indices)) == indices


def test_one_reader_serves_several_reads(coded_video):
    with VideoReader(coded_video) as reader:
        assert reader.info.num_frames == 100 and reader.info.fps == 8.0
        assert (reader.info.height, reader.info.width) == (32, 32)
        assert decoded_indices(reader.read([60, 61])) == [60, 61]
        assert decoded_indices(reader.read([5, 9])) == [5, 9]  # backwards after a forward read


def test_reads_from_bytes(coded_video):
    assert decoded_indices(read_video_frames(coded_video.read_bytes(), [30, 34, 38])) == [30, 34, 38]


@pytest.mark.parametrize("extension", ["mkv", "h264"])
def test_frame_count_without_container_metadata(tmp_path, extension):
    # Matroska stores no frame count (estimated from duration × fps); a raw H.264 stream has neither (counted),
    # and cannot seek (the reader starts over instead).
    path = write_video(index_coded_frames(40), tmp_path / f"coded.{extension}", keyframe_interval=8)
    with VideoReader(path) as reader:
        assert reader.info.num_frames == 40
        assert decoded_indices(reader.read([21, 25, 29, 33])) == [21, 25, 29, 33]
        assert decoded_indices(reader.read([0, 39])) == [0, 39]


def test_too_short(coded_video):
    with pytest.raises(VideoReadError, match="needs frame 130 but has 100 frames") as info:
        read_video_frames(coded_video, [100, 130])
    assert info.value.reason == "too_short"


def test_corrupt_file_is_unreadable(tmp_path):
    with pytest.raises(VideoReadError, match="cannot open") as info:
        read_video_frames(write_corrupt_video(tmp_path / "bad.mp4"), [0])
    assert info.value.reason == "unreadable"


def test_truncated_bytes_are_unreadable(coded_video):
    data = coded_video.read_bytes()
    with pytest.raises(VideoReadError) as info:
        read_video_frames(data[: len(data) // 2], [0])
    assert info.value.reason in ("unreadable", "corrupt")


def test_missing_file(tmp_path):
    with pytest.raises(VideoReadError, match="no such file") as info:
        VideoReader(tmp_path / "nowhere.mp4")
    assert info.value.reason == "missing"


def test_bad_indices_are_value_errors(coded_video):
    with pytest.raises(ValueError, match="non-negative"):
        read_video_frames(coded_video, [-1, 3])
    with pytest.raises(ValueError, match="no frame indices"):
        read_video_frames(coded_video, [])


@pytest.mark.parametrize("fps", [30000 / 1001, 25.0, 60.0])
def test_seeking_at_common_frame_rates(tmp_path, fps):
    path = write_video(index_coded_frames(120), tmp_path / "coded.mp4", fps=fps, keyframe_interval=30)
    with VideoReader(path) as reader:
        assert reader.info.num_frames == 120 and reader.info.fps == pytest.approx(fps, rel=1e-3)
        for start in (29, 30, 31, 59, 103):
            indices = list(range(start, min(120, start + 16), 4))
            assert decoded_indices(reader.read(indices)) == indices
