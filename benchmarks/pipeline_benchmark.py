"""Seconds per denoising step and peak memory: our pipeline vs diffusers' AnimateDiffPipeline (AnimateDiffSDXLPipeline
for the SDXL presets).

Both run the same random SD-shaped model (same UNet, motion module, VAE, text encoder, scheduler, seed). Time per
step comes from one process that holds both pipelines and alternates them, order-balanced (ours, diffusers,
diffusers, ours, ...), so a machine whose speed drifts slows both alike; peak memory comes from one fresh subprocess
per pipeline, so each peak is its own.

    python benchmarks/pipeline_benchmark.py                 # mid-size config on CPU
    python benchmarks/pipeline_benchmark.py --preset sd15 --device cuda --dtype fp16   # real SD1.5 shape, 16×512²
    python benchmarks/pipeline_benchmark.py --preset sdxl-tiny                          # SDXL's structure, on CPU
    python benchmarks/pipeline_benchmark.py --preset sdxl --device cuda --dtype fp16   # real SDXL shape, 16×1024²
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

PRESETS = {
    # SD1.5's structure (4 levels, 2 layers, 8 heads, 768-d text) at reduced width, for CPU runs.
    "mid": dict(channels=(64, 128, 256, 256), size=128, frames=16, text_dim=768, text_layers=2),
    "sd15": dict(channels=(320, 640, 1280, 1280), size=512, frames=16, text_dim=768, text_layers=12),
    # SDXL's structure (3 levels, the first without attention, deeper transformers further down, two text encoders
    # joined to 2048-d text, pooled text and size conditioning) at reduced width and depth, for CPU runs.
    "sdxl-tiny": dict(channels=(64, 128, 256), size=128, frames=16, text_dim=768, text_layers=2, sdxl=True,
                      depth=(1, 2, 4), heads=(2, 4, 8), text2_dim=1280, text2_layers=2),
    "sdxl": dict(channels=(320, 640, 1280), size=1024, frames=16, text_dim=768, text_layers=12, sdxl=True,
                 depth=(1, 2, 10), heads=(5, 10, 20), text2_dim=1280, text2_layers=32),
}  # fmt: skip


def build(preset: dict, seed: int = 0):  # noqa: ANN201
    """(UNet, motion modules, VAE, text encoder, SDXL's second text encoder or None), random."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from animatediff.models import MotionModuleConfig, MotionModules

    torch.manual_seed(seed)
    ch, sdxl = preset["channels"], preset.get("sdxl", False)
    if sdxl:
        unet = UNet2DConditionModel(
            sample_size=preset["size"] // 8,
            block_out_channels=ch,
            layers_per_block=2,
            transformer_layers_per_block=preset["depth"],
            attention_head_dim=preset["heads"],
            cross_attention_dim=preset["text_dim"] + preset["text2_dim"],
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=256 * 6 + preset["text2_dim"],
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 2,
            up_block_types=("CrossAttnUpBlock2D",) * 2 + ("UpBlock2D",),
        )
        motion = MotionModules(MotionModuleConfig(block_out_channels=ch, use_mid_block=False))
    else:
        unet = UNet2DConditionModel(
            sample_size=preset["size"] // 8,
            block_out_channels=ch,
            layers_per_block=2,
            cross_attention_dim=preset["text_dim"],
            attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        )
        motion = MotionModules(MotionModuleConfig(block_out_channels=ch, use_mid_block=True, version="v2"))
    with torch.no_grad():
        for p in motion.parameters():
            p.normal_(0, 0.02)
    vae_ch = tuple(min(c, 128) for c in (*ch, ch[-1])[:4]) if preset["size"] < 512 else (128, 256, 512, 512)
    vae = AutoencoderKL(
        block_out_channels=vae_ch,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
    )

    def clip(width: int, layers: int, cls=CLIPTextModel, **extra):  # noqa: ANN001, ANN202
        config = CLIPTextConfig(
            hidden_size=width,
            intermediate_size=width * 4,
            num_hidden_layers=layers,
            num_attention_heads=width // 64,
            max_position_embeddings=77,
            vocab_size=49408,
            **extra,
        )
        return cls(config)

    text = clip(preset["text_dim"], preset["text_layers"])
    text_2 = None
    if sdxl:
        text_2 = clip(
            preset["text2_dim"], preset["text2_layers"], CLIPTextModelWithProjection, projection_dim=preset["text2_dim"]
        )
    return unet, motion, vae, text, text_2


def tokenizer(tmp: str):  # noqa: ANN201
    sys.path.insert(0, ".")
    from pathlib import Path

    from tests.tiny import tiny_tokenizer

    return tiny_tokenizer(Path(tmp))


class StepClock:
    """Times a run's denoising steps on `device`: `stamp` at each step's end (our pipeline's `callback`), `on_step`
    as diffusers' `callback_on_step_end`."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.stamps: list[float] = []

    def stamp(self, *_: object) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())

    def on_step(self, _pipe, _i, _t, kwargs):  # noqa: ANN001, ANN202
        self.stamp()
        return kwargs

    def intervals(self, run, steps: int) -> list[float]:  # noqa: ANN001 - run(n): n denoising steps
        """The seconds between the ends of consecutive steps of one `run(steps)`."""
        self.stamps.clear()
        run(steps)
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]

    def measure(self, run, steps: int) -> dict:  # noqa: ANN001 - run(n): n denoising steps
        """One warm-up step, then `steps` timed: {"s_per_step": the median interval between step ends (denoising
        alone, no text encoding or VAE decoding; the median resists a busy machine's hiccups), "peak_mib"}."""
        import torch

        run(1)
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        per_step = statistics.median(self.intervals(run, steps))
        if self.device.startswith("cuda"):
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"s_per_step": per_step, "peak_mib": peak}


def ours_pipeline(tok, text, vae, unet, motion, device: str, dtype, text_2=None):  # noqa: ANN001, ANN201
    """Our pipeline over the built model, on `device` in `dtype` (DDIM); SDXL with `text_2`."""
    from animatediff.models import inflate_unet
    from animatediff.pipeline import AnimationPipeline
    from animatediff.sampling import make_scheduler

    pipe = AnimationPipeline(
        tok, text, vae, inflate_unet(unet, motion), make_scheduler("ddim"), tokenizer_2=tok, text_encoder_2=text_2
    ).to(device)
    for part in (pipe.text_encoder, pipe.text_encoder_2, pipe.vae, pipe.unet):
        if part is not None:
            part.to(dtype)
    return pipe


def diffusers_adapter(motion):  # noqa: ANN001, ANN201
    """diffusers' MotionAdapter holding the built motion module's weights (v2-shaped with its mid block; SDXL's
    without one)."""
    from diffusers import MotionAdapter

    from animatediff.formats.motion_module_files import motion_state_dict, official_to_diffusers

    adapter = MotionAdapter(
        block_out_channels=motion.config.block_out_channels,
        motion_layers_per_block=2,
        use_motion_mid_block=motion.config.use_mid_block,
        motion_max_seq_length=32,
    )
    adapter.load_state_dict(official_to_diffusers(motion_state_dict(motion)))
    return adapter


def runner(  # noqa: ANN201 - run(n)
    which: str, preset_name: str, device: str, dtype_name: str, clock: StepClock, compile_ours: bool = False
):
    """run(n): `which` pipeline ("ours" or "diffusers") drawing one clip in n steps, each step stamped on `clock`;
    `compile_ours`: ours with its regional torch.compile (the first call compiles)."""
    import tempfile

    import torch
    from diffusers import AnimateDiffPipeline, AnimateDiffSDXLPipeline

    from animatediff.sampling import make_scheduler

    preset = PRESETS[preset_name]
    dtype = getattr(torch, {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[dtype_name])
    unet, motion, vae, text, text_2 = build(preset)
    tok = tokenizer(tempfile.mkdtemp())
    size = {"height": preset["size"], "width": preset["size"]}
    if which == "ours":
        pipe = ours_pipeline(tok, text, vae, unet, motion, device, dtype, text_2)
        if compile_ours:
            pipe.compile_unet()

        def run(n: int) -> None:
            pipe("a red circle", num_frames=preset["frames"], num_inference_steps=n, seed=0, progress=False,
                 callback=clock.stamp, **size)  # fmt: skip
    else:
        parts = dict(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, motion_adapter=diffusers_adapter(motion),
                     scheduler=make_scheduler("ddim"))  # fmt: skip
        if text_2 is None:
            pipe = AnimateDiffPipeline(**parts).to(device, dtype)
        else:
            pipe = AnimateDiffSDXLPipeline(**parts, text_encoder_2=text_2, tokenizer_2=tok).to(device, dtype)
        pipe.set_progress_bar_config(disable=True)

        def run(n: int) -> None:
            pipe("a red circle", num_frames=preset["frames"], num_inference_steps=n, output_type="np",
                 generator=torch.Generator("cpu").manual_seed(0), callback_on_step_end=clock.on_step,
                 **size)  # fmt: skip

    return run


def measure(which: str, preset_name: str, device: str, dtype_name: str, steps: int, compile_ours: bool = False) -> dict:
    """One pipeline alone in this process: its time per step and peak memory."""
    clock = StepClock(device)
    return {"which": which, **clock.measure(runner(which, preset_name, device, dtype_name, clock, compile_ours), steps)}


def paired(preset_name: str, device: str, dtype_name: str, steps: int, rounds: int, compile_ours: bool = False) -> dict:
    """Both pipelines in this process, alternated order-balanced for `rounds` rounds of `steps` timed steps each:
    {which: the median time per step over all its rounds}."""
    clocks = {which: StepClock(device) for which in ("ours", "diffusers")}
    runs = {
        which: runner(which, preset_name, device, dtype_name, clock, compile_ours) for which, clock in clocks.items()
    }
    intervals: dict[str, list[float]] = {which: [] for which in runs}
    for run in runs.values():
        run(1)  # warm-up
    for r in range(rounds):
        for which in ("ours", "diffusers") if r % 2 == 0 else ("diffusers", "ours"):
            intervals[which] += clocks[which].intervals(runs[which], steps + 1)
    return {which: statistics.median(values) for which, values in intervals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, default="mid")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    parser.add_argument("--steps", type=int, default=5, help="timed denoising steps per run (plus one not timed)")
    parser.add_argument(
        "--repeats", type=int, default=4, help="rounds of the paired timing, order-balanced (ours first every other)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="ours with --compile (regional torch.compile; its compiling call untimed)",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        if args.child == "pair":
            result = paired(args.preset, args.device, args.dtype, args.steps, args.repeats, args.compile)
        else:
            result = measure(args.child, args.preset, args.device, args.dtype, args.steps + 1, args.compile)
        print(json.dumps(result))
        return

    def child(which: str) -> dict:
        out = subprocess.run(
            [sys.executable, __file__, "--child", which, "--preset", args.preset, "--device", args.device,
             "--dtype", args.dtype, "--steps", str(args.steps), "--repeats", str(args.repeats),
             *(["--threads", str(args.threads)] if args.threads else []), *(["--compile"] if args.compile else [])],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        return json.loads(out.strip().splitlines()[-1])

    alone = {which: child(which) for which in ("diffusers", "ours")}
    together = child("pair")
    p = PRESETS[args.preset]
    print(
        f"preset {args.preset}: channels {p['channels']}, {p['frames']} frames at {p['size']}², "
        f"{args.device} {args.dtype}, CFG on{', ours compiled' if args.compile else ''}"
    )
    print(f"{'':10s} {'s/step':>8s} {'alone':>8s} {'peak MiB':>9s}")
    for which in ("diffusers", "ours"):
        print(f"{which:10s} {together[which]:8.3f} {alone[which]['s_per_step']:8.3f} {alone[which]['peak_mib']:9.0f}")
    print(f"(s/step: {args.repeats} alternating rounds in one process; alone: one run in a process of its own)")
    d, o = alone["diffusers"], alone["ours"]
    print(
        f"ratio ours/diffusers: time {together['ours'] / together['diffusers']:.2f}×, "
        f"memory {o['peak_mib'] / d['peak_mib']:.2f}×"
    )


if __name__ == "__main__":
    main()
