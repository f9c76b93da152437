"""Clips per second decoded by seeking to the clip versus decoding the video from its start.

Writes a synthetic WebVid-sized video (default 600 frames of 336×596 at 25 fps, as a 24-second WebVid clip;
a moving square over a panning texture with per-frame grain),
then reads `--clips` random 16-frame, stride-4 clips from it both ways, in one process with one decoder thread
(as in one DataLoader worker). The two ways alternate clip by clip and each rate is taken from the median clip
time, so load from other processes on a shared machine hits both alike. Also times the whole item (decode +
resize + crop to 256) with seeking, the same from a `prepare --resize 256` copy, and a DataLoader over a folder
of such videos.

    python benchmarks/data_benchmark.py [--frames 600] [--height 336] [--width 596] [--gop 25 250] [--clips 12]
                                        [--loader-workers 0 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from animatediff.data.clips import ClipConfig, clip_indices, transform_clip
from animatediff.data.datasets import VideoFolderDataset
from animatediff.data.prepare import reencode
from animatediff.data.synthetic import moving_square_frames, write_video
from animatediff.data.video_reader import read_video_frames


def textured_frames(num_frames: int, height: int, width: int, noise: float) -> np.ndarray:
    """A moving square over a panning texture plus per-frame grain: every frame carries new detail, as camera
    footage does. (A flat synthetic scene makes inter frames nearly free and flatters decoding from the start.)"""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, size=(height // 8 + 1, (width + 2 * num_frames) // 8 + 1, 3), dtype=np.uint8)
    texture = texture.repeat(8, 0).repeat(8, 1)
    frames = moving_square_frames(num_frames, height, width)
    for i in range(num_frames):
        grain = rng.normal(0.0, noise, size=(height, width, 1))
        pan = texture[:height, 2 * i : 2 * i + width].astype(np.float32)
        frames[i] = np.clip(0.5 * frames[i] + 0.5 * pan + grain, 0, 255).astype(np.uint8)
    return frames


def make_item(source: Path | bytes, indices: np.ndarray, config: ClipConfig) -> None:
    """What a dataset item costs once the clip's indices are drawn: seek + decode, flip, resize, crop."""
    transform_clip(read_video_frames(source, indices), config, np.random.default_rng(0))


def timed(fn) -> float:  # noqa: ANN001
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--height", type=int, default=336)
    parser.add_argument("--width", type=int, default=596)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--gop", type=int, nargs="+", default=[25, 250], help="keyframe intervals to try")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--noise", type=float, default=6.0, help="per-frame grain (grey levels, std)")
    parser.add_argument(
        "--loader-workers",
        type=int,
        nargs="*",
        default=[0, 2],
        help="also time a DataLoader (batch 4) over a folder of copies of the last video with these worker counts",
    )
    args = parser.parse_args()

    config = ClipConfig()
    rng = np.random.default_rng(0)
    clips = [clip_indices(args.frames, config, rng) for _ in range(args.clips)]
    frames = textured_frames(args.frames, args.height, args.width, args.noise)
    print(
        f"video: {args.frames} frames {args.height}x{args.width} @ {args.fps} fps; clips: 16 frames, stride 4, "
        f"{args.clips} random starts; rates are 1 / median time per clip"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for gop in args.gop:
            path = write_video(frames, Path(tmp) / f"gop{gop}.mp4", fps=args.fps, keyframe_interval=gop)
            read_video_frames(path, clips[0])  # warm-up: first-call allocations, file cache
            seek, start, item = [], [], []
            for indices in clips:
                seek.append(timed(lambda p=path, x=indices: read_video_frames(p, x, seek=True)))
                start.append(timed(lambda p=path, x=indices: read_video_frames(p, x, seek=False)))
                item.append(timed(lambda p=path, x=indices: make_item(p, x, config)))
            seek_rate, start_rate = 1 / statistics.median(seek), 1 / statistics.median(start)
            print(
                f"keyframe every {gop:4d}: seek {seek_rate:6.2f} clips/s | from start {start_rate:6.2f} clips/s | "
                f"speed-up {seek_rate / start_rate:4.2f}x | full item (seek + resize/crop 256) "
                f"{1 / statistics.median(item):6.2f} items/s"
            )
        prepared = reencode(path, config.size, keyframe_interval=16)
        item = [timed(lambda x=indices: make_item(prepared, x, config)) for indices in clips]
        print(
            f"prepared (prepare --resize {config.size}, keyframe every 16; {len(prepared) / 2**20:.1f} MiB vs "
            f"{path.stat().st_size / 2**20:.1f} MiB): full item {1 / statistics.median(item):6.2f} items/s"
        )
        if args.loader_workers:
            folder = Path(tmp) / "folder"
            folder.mkdir()
            for i in range(args.clips):  # hard links: a folder of captioned videos without re-encoding
                (folder / f"v{i:03d}.mp4").hardlink_to(path)
                (folder / f"v{i:03d}.txt").write_text(f"clip {i}")
            for workers in args.loader_workers:
                loader = DataLoader(VideoFolderDataset(folder, config), batch_size=4, num_workers=workers)
                begin = time.perf_counter()
                count = sum(len(batch["text"]) for batch in loader)
                print(
                    f"DataLoader over {count} videos (last keyframe interval), {workers} workers, batch 4: "
                    f"{count / (time.perf_counter() - begin):6.2f} items/s, worker start-up included"
                )


if __name__ == "__main__":
    main()
