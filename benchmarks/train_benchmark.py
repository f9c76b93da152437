"""Training throughput and peak memory: our Accelerate trainer vs. a re-creation of the official training loop.

The official loop (github.com/guoyww/AnimateDiff, `train.py`) is re-created in plain torch: the whole inflated
UNet with `requires_grad` only on parameters whose names contain `motion_modules.`, AdamW over those, VAE encode
of the (b·f) frames, one timestep per video, linear-beta DDPM noise, caption dropout 0.1, fp32 MSE, backward,
grad clip 1.0 over the UNet's parameters, step. Both run the same tiny SD1.x-shaped model on the same clips.

Each variant runs in its own process, so peak memory (RSS on CPU, `max_memory_allocated` on CUDA) is its own.

    python benchmarks/train_benchmark.py                      # CPU, tiny model
    python benchmarks/train_benchmark.py --device cuda --frames 16 --size 64 --batch 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process in MiB, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _write_base(folder: Path) -> None:
    from tests.tiny import official_scheduler, tiny_text_encoder, tiny_tokenizer, tiny_unet, tiny_vae

    (folder / "tok").mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer(folder / "tok")
    tokenizer.save_pretrained(folder / "tokenizer")
    tiny_text_encoder(len(tokenizer)).save_pretrained(folder / "text_encoder")
    tiny_vae().save_pretrained(folder / "vae")
    tiny_unet().save_pretrained(folder / "unet")
    official_scheduler().save_pretrained(folder / "scheduler")


def _batches(args: argparse.Namespace) -> list[dict]:
    from torch.utils.data import DataLoader

    from animatediff.data.synthetic import MovingSquares

    data = MovingSquares(args.batch * (args.steps + args.warmup), args.frames, args.size, seed=0)
    return list(DataLoader(data, batch_size=args.batch))


def run_ours(args: argparse.Namespace, base: Path, out: Path) -> tuple[callable, list[dict]]:
    from animatediff.train.config import config_from_dict
    from animatediff.train.trainer import Trainer

    config = config_from_dict(
        {
            "output_dir": str(out),
            "cpu": args.device == "cpu",
            "model": {"base": str(base)},
            "gradient_checkpointing": args.checkpointing,
            "data": {"kind": "synthetic", "num_frames": args.frames, "resolution": args.size, "num_workers": 0},
            "optim": {"batch_size": args.batch},
            "logging": {"report_to": "none", "progress": False},
        }
    )
    trainer = Trainer(config)
    return trainer.micro_step, _batches(args)


def run_official(args: argparse.Namespace, base: Path, _out: Path) -> tuple[callable, list[dict]]:
    import random

    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from einops import rearrange

    from animatediff.base_model import load_base, read_component_config
    from animatediff.models import MotionModules, inflate_unet
    from animatediff.train.config import ModelConfig
    from animatediff.train.motion_init import scratch_config

    device = torch.device(args.device)
    torch.manual_seed(42)
    parts = load_base(base)
    modules = MotionModules(scratch_config(ModelConfig(base=str(base)), read_component_config(base, "unet")))
    unet = inflate_unet(parts.unet, modules).to(device)
    vae, text_encoder, tokenizer = parts.vae.to(device), parts.text_encoder.to(device), parts.tokenizer
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    unet.requires_grad_(False)
    for name, param in unet.named_parameters():
        if "motion_modules." in name:
            param.requires_grad = True
    optimizer = torch.optim.AdamW(
        [p for p in unet.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8
    )
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear")
    unet.train()

    def step(batch: dict) -> torch.Tensor:
        pixel_values = batch["pixel_values"].to(device)
        video_length = pixel_values.shape[1]
        with torch.no_grad():
            pixel_values = rearrange(pixel_values, "b f c h w -> (b f) c h w")
            latents = vae.encode(pixel_values).latent_dist.sample()
            latents = rearrange(latents, "(b f) c h w -> b c f h w", f=video_length)
            latents = latents * 0.18215
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), device=device)
        noisy_latents = scheduler.add_noise(latents, noise, timesteps)
        texts = [name if random.random() > 0.1 else "" for name in batch["text"]]
        with torch.no_grad():
            ids = tokenizer(
                texts, max_length=tokenizer.model_max_length, padding="max_length", truncation=True, return_tensors="pt"
            ).input_ids.to(device)
            encoder_hidden_states = text_encoder(ids)[0]
        pred = unet(noisy_latents, timesteps, encoder_hidden_states)
        loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        return loss.detach()

    return step, _batches(args)


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        _write_base(base)
        build = run_ours if args.child == "ours" else run_official
        step, batches = build(args, base, Path(tmp) / "run")
        for batch in batches[: args.warmup]:
            step(batch)
        if args.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        rss_before = _rss_mib("VmRSS")
        start = time.perf_counter()
        for batch in batches[args.warmup :]:
            loss = step(batch)
        float(loss)  # waits for the device
        elapsed = time.perf_counter() - start
        result = {
            "variant": args.child + (" + grad checkpointing" if args.checkpointing else ""),
            "clips_per_s": args.steps * args.batch / elapsed,
            "s_per_step": elapsed / args.steps,
            "peak_rss_mib": _rss_mib("VmHWM"),
            "rss_growth_mib": _rss_mib("VmHWM") - rss_before,
        }
        if args.device == "cuda":
            result["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
        print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32, help="pixels; the tiny VAE halves it")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads in each variant")
    parser.add_argument("--checkpointing", action="store_true", help="(child) our trainer with checkpointing")
    parser.add_argument("--child", choices=["ours", "official"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    common = [
        f"--device={args.device}",
        f"--batch={args.batch}",
        f"--frames={args.frames}",
        f"--size={args.size}",
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
        f"--threads={args.threads}",
    ]
    results = {}
    for name, extra in (
        ("official", ["--child=official"]),
        ("ours", ["--child=ours"]),
        ("ours+ckpt", ["--child=ours", "--checkpointing"]),
    ):
        proc = subprocess.run([sys.executable, __file__, *common, *extra], capture_output=True, text=True, cwd=ROOT)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
        results[name] = json.loads(lines[-1][len("RESULT ") :])
    print(
        f"device {args.device}, batch {args.batch} × {args.frames} frames × {args.size}², {args.steps} timed steps, "
        f"{args.threads} thread(s), fp32"
    )
    memory_key = "peak_cuda_mib" if args.device == "cuda" else "peak_rss_mib"
    print(f"{'variant':32s} {'clips/s':>9s} {'s/step':>8s} {'peak MiB':>9s} {'growth MiB':>11s}")
    for r in results.values():
        print(
            f"{r['variant']:32s} {r['clips_per_s']:9.2f} {r['s_per_step']:8.3f} {r[memory_key]:9.1f} "
            f"{r['rss_growth_mib']:11.1f}"
        )
    ours, official = results["ours"], results["official"]
    print(
        f"ours / official: throughput × {ours['clips_per_s'] / official['clips_per_s']:.2f}, "
        f"peak memory × {ours[memory_key] / official[memory_key]:.2f}"
    )


if __name__ == "__main__":
    main()
