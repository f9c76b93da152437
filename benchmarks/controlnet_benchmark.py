"""Seconds per denoising step and peak memory with one ControlNet (or one SparseCtrl encoder): our pipeline vs
diffusers' AnimateDiffControlNetPipeline (AnimateDiffSparseControlNetPipeline).

Both run the same random SD-shaped model (pipeline_benchmark.py's `build`), the same random ControlNet made from its
UNet (`ControlNetModel.from_unet`, the residual convolutions drawn so that it steers) and control frames, or the
same random RGB SparseCtrl encoder (ours, and diffusers' SparseControlNetModel holding its weights) with a keyframe
at frame 0, the same seed, with classifier-free guidance. Each measurement runs in a fresh subprocess so peak memory
is its own.

    python benchmarks/controlnet_benchmark.py                    # small config on CPU
    python benchmarks/controlnet_benchmark.py --control sparsectrl   # image-to-video with SparseCtrl
    python benchmarks/controlnet_benchmark.py --preset mid --threads 2
    python benchmarks/controlnet_benchmark.py --preset sd15 --device cuda --dtype fp16   # SD1.5's shape, 16×512²
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_benchmark import PRESETS as PIPELINE_PRESETS  # noqa: E402 - the random SD-shaped model both use
from pipeline_benchmark import StepClock, build, diffusers_adapter, ours_pipeline, tokenizer  # noqa: E402

PRESETS = {
    # SD1.5's structure at a quarter of its width, 8 frames at 64², for a quick CPU run.
    "small": dict(channels=(32, 64, 128, 128), size=64, frames=8, text_dim=768, text_layers=2),
    **PIPELINE_PRESETS,
}


def controlnet_for(unet, seed: int = 1):  # noqa: ANN001, ANN201
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    model = ControlNetModel.from_unet(unet)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding")):
                p.normal_(0, 0.02)
    return model.eval()


def sparse_ctrl_for(unet, seed: int = 1):  # noqa: ANN001, ANN201
    """Our RGB SparseCtrl encoder shaped after `unet`, its zero-started weights drawn so that it steers, and
    diffusers' SparseControlNetModel with the same weights."""
    import torch
    from diffusers import SparseControlNetModel

    from animatediff.formats.sparse_ctrl import model_state_dict, official_to_diffusers_sd
    from animatediff.formats.sparse_ctrl_configs import diffusers_config
    from animatediff.models.sparse_ctrl import SparseControlNet, SparseCtrlConfig

    torch.manual_seed(seed)
    ours = SparseControlNet.from_unet(unet, SparseCtrlConfig())
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    config = {k: v for k, v in diffusers_config(ours).items() if not k.startswith("_")}
    reference = SparseControlNetModel(**config)
    reference.load_state_dict(official_to_diffusers_sd(model_state_dict(ours)))
    return ours.eval(), reference.eval()


def measure(which: str, preset_name: str, device: str, dtype_name: str, steps: int, control_kind: str) -> dict:
    import tempfile

    import torch
    from diffusers import AnimateDiffControlNetPipeline, AnimateDiffSparseControlNetPipeline

    from animatediff.pipeline.controlnet import ControlNet
    from animatediff.pipeline.sparse_ctrl import SparseCtrl
    from animatediff.sampling import make_scheduler

    preset = PRESETS[preset_name]
    clock = StepClock(device)
    dtype = getattr(torch, {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[dtype_name])
    unet, motion, vae, text, _ = build(preset)
    sparse = control_kind == "sparsectrl"
    if sparse:
        ours_sparse, reference_sparse = (m.to(device, dtype) for m in sparse_ctrl_for(unet))
    else:
        controlnet = controlnet_for(unet).to(device, dtype)
    size, frames = preset["size"], preset["frames"]
    control = torch.rand(frames, 3, size, size, generator=torch.Generator().manual_seed(2))
    control_kwargs = (
        {"sparse_ctrls": [SparseCtrl(ours_sparse, {0: control[0]})]}
        if sparse
        else {"controlnets": [ControlNet(controlnet, control)]}
    )
    tok = tokenizer(tempfile.mkdtemp())
    if which == "ours":
        pipe = ours_pipeline(tok, text, vae, unet, motion, device, dtype)

        def run(n: int) -> None:
            pipe("a red circle", num_frames=frames, num_inference_steps=n, seed=0, progress=False,
                 callback=clock.stamp, **control_kwargs)  # fmt: skip
    else:
        kind = AnimateDiffSparseControlNetPipeline if sparse else AnimateDiffControlNetPipeline
        pipe = kind(
            vae=vae,
            text_encoder=text,
            tokenizer=tok,
            unet=unet,
            motion_adapter=diffusers_adapter(motion),
            controlnet=reference_sparse if sparse else controlnet,
            scheduler=make_scheduler("ddim"),
        ).to(device, dtype)
        pipe.set_progress_bar_config(disable=True)
        reference_kwargs = (
            {"conditioning_frames": [control[0][None]], "controlnet_frame_indices": [0]}
            if sparse
            else {"conditioning_frames": list(control)}
        )

        def run(n: int) -> None:
            pipe("a red circle", num_frames=frames, num_inference_steps=n, output_type="np",
                 generator=torch.Generator("cpu").manual_seed(0), callback_on_step_end=clock.on_step,
                 **reference_kwargs)  # fmt: skip

    return {"which": which, **clock.measure(run, steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, default="small")
    parser.add_argument("--control", choices=["controlnet", "sparsectrl"], default="controlnet")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    parser.add_argument("--steps", type=int, default=5, help="denoising steps per run (the first is not timed)")
    parser.add_argument("--repeats", type=int, default=1, help="alternate diffusers/ours this many times; best kept")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.child, args.preset, args.device, args.dtype, args.steps, args.control)))
        return
    results: dict[str, dict] = {}
    for _ in range(args.repeats):
        for which in ("diffusers", "ours"):
            command = [sys.executable, __file__, "--child", which, "--preset", args.preset, "--device", args.device,
                       "--dtype", args.dtype, "--steps", str(args.steps), "--control", args.control]  # fmt: skip
            if args.threads:
                command += ["--threads", str(args.threads)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            best = results.get(which)
            if best is None or r["s_per_step"] < best["s_per_step"]:
                results[which] = r
    p = PRESETS[args.preset]
    print(
        f"preset {args.preset}: channels {p['channels']}, {p['frames']} frames at {p['size']}², "
        f"{'one SparseCtrl encoder (a keyframe at 0)' if args.control == 'sparsectrl' else 'one ControlNet'}, "
        f"{args.device} {args.dtype}, CFG on"
    )
    print(f"{'':10s} {'s/step':>8s} {'peak MiB':>9s}")
    for which in ("diffusers", "ours"):
        print(f"{which:10s} {results[which]['s_per_step']:8.3f} {results[which]['peak_mib']:9.0f}")
    d, o = results["diffusers"], results["ours"]
    print(
        f"ratio ours/diffusers: time {o['s_per_step'] / d['s_per_step']:.2f}×, "
        f"memory {o['peak_mib'] / d['peak_mib']:.2f}×"
    )


if __name__ == "__main__":
    main()
