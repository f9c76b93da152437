"""Clips per second decoded by seeking to the clip versus decoding the video from its start.

Writes a synthetic WebVid-sized video (default 600 frames of 336×596 at 25 fps, as a 24-second WebVid clip),
then reads `--clips` random 16-frame, stride-4 clips from it both ways, in one process with one decoder thread
(as in one DataLoader worker). Also times the whole item (decode + resize + crop to 256) with seeking.

    python benchmarks/data_benchmark.py [--frames 600] [--height 336] [--width 596] [--gop 25 250] [--clips 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from animatediff.data.clips import ClipConfig, clip_indices, load_clip
from animatediff.data.synthetic import moving_square_frames, write_video
from animatediff.data.video_reader import read_video_frames


def clips_per_second(path: Path, starts: list[np.ndarray], seek: bool) -> float:
    read_video_frames(path, starts[0], seek=seek)  # warm-up: first-call allocations, file cache
    begin = time.perf_counter()
    for indices in starts:
        read_video_frames(path, indices, seek=seek)
    return len(starts) / (time.perf_counter() - begin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--height", type=int, default=336)
    parser.add_argument("--width", type=int, default=596)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--gop", type=int, nargs="+", default=[25, 250], help="keyframe intervals to try")
    parser.add_argument("--clips", type=int, default=20)
    args = parser.parse_args()

    config = ClipConfig()
    rng = np.random.default_rng(0)
    clips = [clip_indices(args.frames, config, rng) for _ in range(args.clips)]
    frames = moving_square_frames(args.frames, args.height, args.width)
    print(
        f"video: {args.frames} frames {args.height}x{args.width} @ {args.fps} fps; clips: 16 frames, stride 4, "
        f"{args.clips} random starts"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for gop in args.gop:
            path = write_video(frames, Path(tmp) / f"gop{gop}.mp4", fps=args.fps, keyframe_interval=gop)
            seek = clips_per_second(path, clips, seek=True)
            start = clips_per_second(path, clips, seek=False)
            begin = time.perf_counter()
            for i in range(args.clips):
                load_clip(path, "", config, np.random.default_rng(i))
            items = args.clips / (time.perf_counter() - begin)
            print(
                f"keyframe every {gop:4d}: seek {seek:6.2f} clips/s | from start {start:6.2f} clips/s | "
                f"speed-up {seek / start:4.2f}x | full item (seek + resize/crop 256) {items:6.2f} items/s"
            )


if __name__ == "__main__":
    main()
