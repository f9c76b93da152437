"""Long clips: seconds per denoising step and peak memory at 16, 64 and 256 frames, ours against diffusers'
AnimateDiffPipeline with FreeNoise at the same window, on one random SD-shaped model.

Ours runs twice: with FreeNoise (the same method as diffusers': the whole clip through the UNet, the motion modules
in windows) and with sliding context windows (the whole UNet per window). Each measurement runs in a fresh
subprocess, so its peak memory is its own (CPU: the process's peak RSS; CUDA: the peak allocated).

    python benchmarks/long_clip_benchmark.py                        # small SD-shaped model on CPU
    python benchmarks/long_clip_benchmark.py --preset mid --device cuda --dtype fp16
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_benchmark import StepClock, build, diffusers_adapter, ours_pipeline, tokenizer  # noqa: E402 - shared

PRESETS = {
    # SD1.5's structure (4 levels, 2 layers, 8 heads, 768-d text) at a fraction of its width, for CPU runs.
    "small": dict(channels=(32, 64, 128, 128), size=64, text_dim=768, text_layers=1),
    "mid": dict(channels=(64, 128, 256, 256), size=128, text_dim=768, text_layers=2),
    "sd15": dict(channels=(320, 640, 1280, 1280), size=512, text_dim=768, text_layers=12),
}
WAYS = ("diffusers FreeNoise", "ours FreeNoise", "ours windows")


def measure(which: str, preset_name: str, frames: int, window: int, stride: int, device: str, dtype_name: str,
            steps: int) -> dict:  # fmt: skip
    import tempfile

    import torch
    from diffusers import AnimateDiffPipeline

    from animatediff.pipeline import FreeNoise
    from animatediff.sampling import make_scheduler

    preset = PRESETS[preset_name]
    dtype = getattr(torch, {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[dtype_name])
    clock = StepClock(device)
    unet, motion, vae, text, _ = build(preset)
    tok = tokenizer(tempfile.mkdtemp())
    if which.startswith("ours"):
        pipe = ours_pipeline(tok, text, vae, unet, motion, device, dtype)
        if which == "ours FreeNoise":
            options = dict(free_noise=FreeNoise(context_length=window, context_stride=stride))
        else:
            options = dict(context_length=window, context_overlap=window - stride)

        def run(n: int) -> None:
            pipe("a red circle", num_frames=frames, num_inference_steps=n, seed=0, progress=False,
                 callback=clock.stamp, **options)  # fmt: skip
    else:
        pipe = AnimateDiffPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                   motion_adapter=diffusers_adapter(motion),
                                   scheduler=make_scheduler("ddim")).to(device, dtype)  # fmt: skip
        pipe.set_progress_bar_config(disable=True)
        pipe.enable_free_noise(context_length=window, context_stride=stride)

        def run(n: int) -> None:
            pipe("a red circle", num_frames=frames, num_inference_steps=n, output_type="np",
                 generator=torch.Generator("cpu").manual_seed(0), callback_on_step_end=clock.on_step)  # fmt: skip

    return clock.measure(run, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, default="small")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64, 256], help="clip lengths")
    parser.add_argument("--window", type=int, default=16, help="context length")
    parser.add_argument("--stride", type=int, default=4, help="FreeNoise's window stride; windows overlap by the rest")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per run (the first is not timed)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-frames", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        result = measure(args.child, args.preset, args.child_frames, args.window, args.stride, args.device,
                         args.dtype, args.steps)  # fmt: skip
        print(json.dumps(result))
        return
    results: dict[tuple[str, int], dict] = {}
    for frames in args.frames:
        for which in WAYS:
            command = [sys.executable, __file__, "--child", which, "--child-frames", str(frames), "--preset",
                       args.preset, "--window", str(args.window), "--stride", str(args.stride), "--device",
                       args.device, "--dtype", args.dtype, "--steps", str(args.steps)]  # fmt: skip
            if args.threads:
                command += ["--threads", str(args.threads)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[which, frames] = json.loads(out.strip().splitlines()[-1])
    p = PRESETS[args.preset]
    print(f"preset {args.preset}: channels {p['channels']} at {p['size']}², window {args.window}, stride "
          f"{args.stride}, {args.device} {args.dtype}, CFG on")  # fmt: skip
    print("| frames | " + " | ".join(f"{w}: s/step, peak MiB" for w in WAYS) + " | ours FreeNoise / diffusers |")
    print("|---" * (len(WAYS) + 2) + "|")
    for frames in args.frames:
        cells = [f"{results[w, frames]['s_per_step']:.3f}, {results[w, frames]['peak_mib']:.0f}" for w in WAYS]
        ratio = results["ours FreeNoise", frames]["s_per_step"] / results["diffusers FreeNoise", frames]["s_per_step"]
        print(f"| {frames} | " + " | ".join(cells) + f" | time {ratio:.2f}× |")
    first, last = min(args.frames), max(args.frames)
    for way in WAYS[1:]:
        growth = results[way, last]["peak_mib"] / results[way, first]["peak_mib"]
        print(f"{way}: peak memory at {last} frames {growth:.2f}× the peak at {first}")


if __name__ == "__main__":
    main()
