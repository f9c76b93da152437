"""An IP-Adapter on the embedded world: trained here, then its image prompt measured in clips, one image for every
frame and images at keyframes (the object's colour changing over the clip).

The world ships no image encoder, so this trains one IP-Adapter from scratch on rendered still images: a tiny
CLIPVisionModelWithProjection (random and frozen, its seed fixed), the image projection and the image attention
layers (`to_k_ip`, `to_v_ip`, started from the text's `to_k`, `to_v` as the IP-Adapter paper does), with the world's
base and motion module frozen. The image prompt is a close-up of the object (a crop around it, scaled to the
encoder's 32 px): on whole scenes the random encoder's embedding is mostly background and tells the object's colour
apart in 28 % of images (chance 20 %), on close-ups in all. The captions leave the object's colour out, so the
colour can only come from the image. The weights are written in diffusers' layout beside the encoder
(`<run>/ip_adapter.safetensors`, `<run>/image_encoder/`) and loaded back through `IPAdapter` as a user's are.

Then, with prompts that name no colour ('a circle moving right on a black background'), counted as `world eval`
counts (`world.metrics`): clips of the image's colour without an image prompt (chance) and with one; and with two
keyframe images of different colours at the first and last frame, clips whose first four frames have the first
image's colour and whose last four the second's, against one image for the whole clip.

    python benchmarks/world_ip_adapter.py                   # 1000 steps (about 10 minutes on 2 cores), then 3 rows
    python benchmarks/world_ip_adapter.py --steps 0         # measure a trained run again
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from diffusers.models.attention_processor import Attention
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection
from world_setup import embedded_pipeline, frame_training_step, trained_options

from animatediff.formats.ip_adapter import read_ip_adapter
from animatediff.models.ip_adapter import IP_PROCESSORS, IPAdapterLayers
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.ip_adapter import IPAdapter
from animatediff.text_encoding import encode_prompts
from animatediff.world.metrics import colour_correct, motion_correct, track
from animatediff.world.render import render_image
from animatediff.world.scenes import BASE_WORLD, caption, sample_spec

TOKENS = 4
"""Image tokens the projection makes (the plain IP-Adapter's number)."""


def build_encoder(folder: Path, seed: int = 0) -> CLIPVisionModelWithProjection:
    """The tiny random image encoder, saved to `folder` (32×32 images, patches of 4, embeddings of 32)."""
    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=64, intermediate_size=128, projection_dim=32, num_hidden_layers=2,
                              num_attention_heads=4, image_size=32, patch_size=4)  # fmt: skip
    encoder = CLIPVisionModelWithProjection(config).eval()
    encoder.save_pretrained(folder)
    return encoder


def initial_weights(unet: torch.nn.Module, embed_dim: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """IP-Adapter weights in diffusers' file layout: a random projection, and each cross-attention's image key and
    value started from its text key and value."""
    g = torch.Generator().manual_seed(seed)
    width = unet.config.cross_attention_dim
    sd = {
        "image_proj.proj.weight": 0.02 * torch.randn(TOKENS * width, embed_dim, generator=g),
        "image_proj.proj.bias": torch.zeros(TOKENS * width),
        "image_proj.norm.weight": torch.ones(width),
        "image_proj.norm.bias": torch.zeros(width),
    }
    layers = [m for m in unet.modules() if isinstance(m, Attention) and m.is_cross_attention]
    for i, layer in enumerate(layers):
        sd[f"ip_adapter.{2 * i + 1}.to_k_ip.weight"] = layer.to_k.weight.detach().clone()
        sd[f"ip_adapter.{2 * i + 1}.to_v_ip.weight"] = layer.to_v.weight.detach().clone()
    return sd


def trained_state(layers: IPAdapterLayers) -> dict[str, torch.Tensor]:
    """The trained weights back in diffusers' file layout."""
    with layers.installed():
        unet = layers.unet
        projection = unet.encoder_hid_proj.image_projection_layers[0].state_dict()  # diffusers' names: image_embeds.*
        sd = {f"image_proj.{k.replace('image_embeds.', 'proj.')}": v for k, v in projection.items()}
        processors = [p for p in unet.attn_processors.values() if isinstance(p, IP_PROCESSORS)]
        for i, processor in enumerate(processors):
            sd[f"ip_adapter.{2 * i + 1}.to_k_ip.weight"] = processor.to_k_ip[0].weight.detach().clone()
            sd[f"ip_adapter.{2 * i + 1}.to_v_ip.weight"] = processor.to_v_ip[0].weight.detach().clone()
    return {k: v.contiguous() for k, v in sd.items()}


def still(rng: np.random.Generator, **fixed: str) -> tuple[np.ndarray, str, np.ndarray]:
    """(a rendered still image, its caption without the colour, a close-up of its object: the image prompt)."""
    spec = sample_spec(rng, BASE_WORLD, fixed=fixed or None)
    rendering = render_image(spec)
    (x, y), half = rendering.centroids[0], max(3.0, float(np.sqrt(rendering.areas[0])) * 0.35)
    box = tuple(int(round(v)) for v in (x - half, y - half, x + half, y + half))
    close_up = np.asarray(Image.fromarray(rendering.image).crop(box).resize((32, 32), Image.BILINEAR))
    return rendering.image, caption("", spec.shape, spec.background), close_up


def train(pipe, run: Path, steps: int, batch: int, learning_rate: float) -> None:  # noqa: ANN001
    encoder = build_encoder(run / "image_encoder")
    processor = CLIPImageProcessor(size=32, crop_size=32)
    unet2d = pipe.unet.unet
    save_file(initial_weights(unet2d, encoder.config.projection_dim), str(run / "ip_adapter.safetensors"))
    state, _ = read_ip_adapter(run / "ip_adapter.safetensors")
    layers = IPAdapterLayers(unet2d, [state])
    vae = pipe.vae
    with layers.installed():
        params = [p for p in unet2d.encoder_hid_proj.parameters()]
        params += [p for proc in unet2d.attn_processors.values() if isinstance(proc, IP_PROCESSORS)
                   for p in proc.parameters()]  # fmt: skip
    for p in pipe.unet.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=learning_rate)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for step in range(steps):
        items = [still(rng) for _ in range(batch)]
        images = np.stack([i for i, _, _ in items])
        with torch.no_grad():
            pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
            latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
            text = encode_prompts(pipe.tokenizer, pipe.text_encoder, [c for _, c, _ in items])
            close_ups = [c for _, _, c in items]
            embeds = encoder(processor(close_ups, return_tensors="pt").pixel_values).image_embeds
        keep = torch.from_numpy(rng.random(batch) > 0.05).float()[:, None]  # the image dropped now and then
        with layers.installed():
            added = {"image_embeds": [(embeds * keep)[:, None]]}
            frame_training_step(pipe, latents, text, rng, optimizer, step, steps, start, added_cond_kwargs=added)
    save_file(trained_state(layers), str(run / "ip_adapter.safetensors"))
    for p in params:
        p.requires_grad_(False)


def measure(pipe, run: Path, seeds: int, sample_steps: int, scale: float) -> None:  # noqa: ANN001
    weights = run / "ip_adapter.safetensors"
    rng = np.random.default_rng(123)
    colours = list(BASE_WORLD.colours)
    clips = [(colours[i % len(colours)], colours[(i + 2) % len(colours)], seed) for i in range(len(colours))
             for seed in range(seeds)]  # fmt: skip
    print(f"\n## An IP-Adapter trained on the world: the image prompt's colour (scale {scale}, {sample_steps} DDIM "
          f"steps, {len(clips)} clips a row; prompts name no colour)\n")  # fmt: skip
    print("| image prompt | clips of the (first) image's colour | last 4 frames of the second image's colour | "
          "moving as captioned | clips |")  # fmt: skip
    print("|---|---|---|---|---|")
    rows = {"none": 0, "one image, every frame": 1, "keyframes: frame 0 and frame 15": 2}
    for label, kind in rows.items():
        first_hits = second_hits = moved = 0
        for colour_a, colour_b, seed in clips:
            _, _, image_a = still(rng, colour=colour_a, shape="circle", background="black")
            _, _, image_b = still(rng, colour=colour_b, shape="circle", background="black")
            prompt = "a circle moving right on a black background"
            images = {0: Image.fromarray(image_a), 15: Image.fromarray(image_b)}
            ip = None if kind == 0 else IPAdapter(weights, images if kind == 2 else images[0], scale)
            frames = pipe(prompt, seed=seed, num_inference_steps=sample_steps, progress=False, ip_adapter=ip)[0]
            whole = colour_a if kind < 2 else None
            first_hits += colour_correct(track(frames if whole else frames[:4]), colour_a)
            second_hits += colour_correct(track(frames[-4:]), colour_b)
            moved += motion_correct(track(frames), "right")
        n = len(clips)
        print(f"| {label} | {first_hits}/{n} | {second_hits}/{n} | {moved}/{n} | {n} |", flush=True)


def trained_adapter_options(description: str) -> argparse.ArgumentParser:
    """A parser for a benchmark drawing with the IP-Adapter this one trains: --run-dir, --seeds, --sample-steps,
    --threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--run-dir", default="runs/world-ip-adapter", help="world_ip_adapter.py's run folder")
    parser.add_argument("--seeds", type=int, default=3, help="sampling seeds per colour")
    parser.add_argument("--sample-steps", type=int, default=25, help="DDIM steps per clip")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return parser


def trained_adapter(args: argparse.Namespace) -> tuple[AnimationPipeline, Path]:
    """(the embedded pipeline, the trained IP-Adapter's weights file) for `trained_adapter_options`' arguments; exits
    with a line to say so where this benchmark has not trained it yet."""
    weights = Path(args.run_dir) / "ip_adapter.safetensors"
    if not weights.is_file():
        raise SystemExit(f"{weights} not found: run benchmarks/world_ip_adapter.py first")
    return embedded_pipeline(args.threads, quiet=True), weights


def colour_close_ups(seeds: int) -> list[tuple[str, Image.Image, int]]:
    """(colour, a close-up of a circle of that colour, seed) for every colour of the world and seeds 0 … seeds − 1,
    the close-ups drawn from a fixed generator."""
    rng = np.random.default_rng(123)
    clips = []
    for colour in BASE_WORLD.colours:
        close_up = Image.fromarray(still(rng, colour=colour, shape="circle", background="black")[2])
        clips += [(colour, close_up, seed) for seed in range(seeds)]
    return clips


def main() -> None:
    parser = trained_options(__doc__.splitlines()[0], "runs/world-ip-adapter", 1000, 3, 25, "image prompt's scale")
    parser.add_argument("--batch", type=int, default=16, help="images per step")
    args = parser.parse_args()
    pipe = embedded_pipeline(args.threads, quiet=True)
    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if args.steps:
        train(pipe, run, args.steps, args.batch, args.learning_rate)
    measure(pipe, run, args.seeds, args.sample_steps, args.scale)


if __name__ == "__main__":
    main()
