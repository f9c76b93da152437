"""Keyframe ControlNets (prompt-travel's controlnet_map: `keyframe_controlnets`) on the embedded world: does a clip
follow control images given at a few frames only, and does spreading each keyframe's residuals to its neighbours
(control_scale_list) help?

The world ControlNet of `benchmarks/world_controlnet.py` (trained on Canny edges; train it first there, into the
same --run-dir) steers 16-frame clips of a red circle on blue from the edges of a rendered clip moving one way. The
prompt names no motion (`--text none`, the default: the control is the only say in the motion; that ControlNet
loses to a prompt naming the opposite motion even with edges on every frame) or the opposite one (`--text
opposite`). Rows: the edges of every frame, of every 5th frame (0, 5, 10, 15) and of the first and last frame only,
each without and with a spread; no control. Per row: the clips moving as the control does and as the prompt says
(`world.metrics`).

    python benchmarks/world_keyframe_controlnet.py --run-dir runs/world-controlnet
"""

from __future__ import annotations

import time

import torch
from world_controlnet import OPPOSITE, measuring_options, prompt, trained_controlnet
from world_video_to_video import FRAMES, STARTS, input_clip

from animatediff.pipeline.annotators import canny
from animatediff.pipeline.keyframe_controlnet import KeyframeControlNet
from animatediff.world.metrics import motion_correct, track

ROWS = (
    ("every frame", range(FRAMES), ()),
    ("every 5th frame", (0, 5, 10, 15), ()),
    ("every 5th frame, spread 0.5, 0.25", (0, 5, 10, 15), (0.5, 0.25)),
    ("first and last", (0, FRAMES - 1), ()),
    ("first and last, spread 0.6 … 0.1 (prompt-travel's sample)", (0, FRAMES - 1), (0.6, 0.5, 0.4, 0.3, 0.2, 0.1)),
    ("none (the text alone)", (), ()),
)
"""(label, the frames given control images, the spread)."""


def main() -> None:
    parser = measuring_options(__doc__.splitlines()[0], seeds=4)
    parser.add_argument("--text", choices=["none", "opposite"], default="none", help="the motion the prompt names")
    parser.add_argument("--no-loop", action="store_true", help="the spread stops at the clip's ends (is_loop false)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe, model, exported = trained_controlnet(args.run_dir)
    print(f"\n## Keyframe ControlNets on the embedded world ({exported})\n")
    said = "names no motion" if args.text == "none" else "says the opposite direction"
    print(f"{len(STARTS)} motions × {args.seeds} seeds, {FRAMES} frames, {args.sample_steps} DDIM steps; the prompt "
          f"{said}; the spread {'stops at' if args.no_loop else 'wraps around'} the clip's ends.\n")  # fmt: skip
    print("| control images at | moves as the control | moves as the prompt says | s/clip |")
    print("|---|---|---|---|")
    for label, keyframes, spread in ROWS:
        by_control = by_text = clips = 0
        start = time.perf_counter()
        for motion in STARTS:
            edges = canny(input_clip(motion))
            control = {k: edges[k] for k in keyframes}
            nets = [KeyframeControlNet(model, control, spread=spread, loop=not args.no_loop)] if keyframes else []
            for seed in range(args.seeds):
                text = OPPOSITE[motion] if args.text == "opposite" else None
                frames = pipe(
                    prompt(text), num_frames=FRAMES, num_inference_steps=args.sample_steps, seed=seed,
                    progress=False, controlnets=nets,
                )[0]  # fmt: skip
                path = track(frames)
                by_control += motion_correct(path, motion)
                by_text += text is not None and motion_correct(path, text)
                clips += 1
        seconds = (time.perf_counter() - start) / clips
        print(f"| {label} | {by_control} of {clips} | {by_text} of {clips} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
