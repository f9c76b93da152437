"""Personalized models of the world, learned from images alone, saved in the formats users download.

AnimateDiff animates personalized image models it never saw in training: DreamBooth fine-tunes (Ruiz et al. 2023,
arXiv:2208.12242) shipped as single-file LDM checkpoints, and LoRAs (Hu et al. 2021, arXiv:2106.09685) shipped in
kohya's layout. This module makes both for the world's base, from `personalization_images` of a look the base
lacks (kind 'style': outlined shapes; kind 'object': a star):

- `train_dreambooth`: the whole UNet is fine-tuned (VAE and text encoder frozen) and written, with the base's VAE
  and text encoder, as one LDM-layout .safetensors file (`formats.ldm_export.save_single_file`).
- `train_lora`: PEFT LoRA layers on the UNet's attention projections (to_q, to_k, to_v, to_out.0), base frozen,
  written as a kohya LoRA (`formats.lora.save_kohya_lora`).

Both use the base's own recipe (`train_unet`): the MSE of the prediction the base's scheduler names (ε or v)
on its noise schedule, VAE latents encoded once, each caption encoded once by the frozen text encoder. DreamBooth's
prior preservation is done by mixing base-world images into every batch; the original generates its class images
with the base model itself, but here the world can render real ones, which keep the base's looks without the base's
errors.

Both return figures: `final_loss` (mean of the last 50 step losses), `personal_loss_before/after` and
`prior_loss_before/after` (loss on 16 images of each set at fixed timesteps and noise, comparable across the
run), `trainable_parameters`, `seconds_per_step`, `minutes` (the whole call), `steps`, `method`, `kind`, `path`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from diffusers import AutoencoderKL, SchedulerMixin, UNet2DConditionModel
from tqdm.auto import tqdm

from animatediff.base_model import BaseModel, load_base, read_traits
from animatediff.base_model import base_folder as find_base
from animatediff.formats.ldm_export import save_single_file
from animatediff.formats.lora import save_kohya_lora
from animatediff.world.datasets import PERSONALIZATION_WORLDS, WorldImages, personalization_images
from animatediff.world.loops import TrainLog, training_device, warmup_optimizer
from animatediff.world.scenes import BASE_WORLD, WorldConfig
from animatediff.world.train_unet import CaptionEmbeddings, fixed_unet_loss, unet_loss
from animatediff.world.train_vae import LatentCache, encode_dataset

METHODS = ("dreambooth", "lora")
# A full fine-tune moves every weight of a model trained at 5e-4, so it steps gently; LoRA starts from a zero
# update in a small subspace and needs larger steps to get anywhere in a few hundred of them.
DEFAULT_LR = {"dreambooth": 2e-4, "lora": 1e-3}
ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
EVAL_IMAGES = 16


@dataclass(frozen=True)
class PersonalizeConfig:
    """What to personalize and how.

    The defaults fit the world base (UNet channels (64, 128), 32×32 images, 8×8 latents); both methods
    back-propagate through the whole UNet (LoRA too), so a step costs about the same either way.
    """

    kind: str = "style"
    """The look to learn: 'style' (outlined shapes, caption word "outlined") or 'object' (a new shape, "star")."""
    method: str = "dreambooth"
    """What `personalize` runs: 'dreambooth' (full UNet, single-file checkpoint) or 'lora' (kohya LoRA)."""
    steps: int = 400
    """Optimizer steps."""
    batch_size: int = 32
    """Images per step, personalization and prior images together."""
    lr: float | None = None
    """AdamW learning rate after the warmup; None: 2e-4 for DreamBooth, 1e-3 for LoRA."""
    warmup_steps: int = 20
    """Steps of linear learning-rate warmup."""
    weight_decay: float = 1e-2
    """AdamW weight decay (on the trained weights only: the whole UNet, or the LoRA factors)."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    num_images: int = 200
    """Distinct personalization images (rendered from `seed`)."""
    prior_fraction: float = 0.25
    """Share of each batch that is base-world images (prior preservation); 0 turns it off."""
    num_prior_images: int = 1000
    """Distinct base-world images the prior share is drawn from."""
    caption_dropout: float = 0.0
    """Probability that a caption is replaced by "". 0, as DreamBooth and kohya default to: the unconditional
    branch then stays the base's, and classifier-free guidance pushes towards the new look."""
    lora_rank: int = 8
    """LoRA rank."""
    lora_alpha: float = 8.0
    """LoRA alpha; the update is (alpha / rank) · up @ down, as in PEFT and kohya."""
    lora_targets: tuple[str, ...] = ATTENTION_PROJECTIONS
    """Module names (suffixes) PEFT puts LoRA layers on: the UNet's attention projections."""
    fp16: bool = False
    """Save the weights as float16, as most downloaded models are (half the file); False keeps float32."""
    seed: int = 0
    """Seeds the images, batch order, timesteps, noise and LoRA initialisation."""
    progress: bool = True
    """Show tqdm bars."""

    def __post_init__(self) -> None:
        if self.kind not in PERSONALIZATION_WORLDS:
            raise ValueError(
                f"unknown personalization kind {self.kind!r}; choose one of: {', '.join(PERSONALIZATION_WORLDS)}"
            )
        if self.method not in METHODS:
            raise ValueError(f"unknown personalization method {self.method!r}; choose one of: {', '.join(METHODS)}")
        for name in ("steps", "batch_size", "num_images", "num_prior_images", "lora_rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.prior_fraction < 1.0:
            raise ValueError(f"prior_fraction is a share of the batch in [0, 1), got {self.prior_fraction}")
        if self.prior_per_batch >= self.batch_size:
            raise ValueError(
                f"prior_fraction {self.prior_fraction} leaves no personalization image in a batch of {self.batch_size}"
            )
        if not 0.0 <= self.caption_dropout <= 1.0:
            raise ValueError(f"caption_dropout is a probability, got {self.caption_dropout}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    @property
    def prior_per_batch(self) -> int:
        return round(self.prior_fraction * self.batch_size)


@dataclass
class PersonalizationData:
    """Latents of the personalization images and of the prior (base-world) images, each encoded once."""

    personal: LatentCache
    prior: LatentCache | None
    scaling_factor: float

    def batch(self, cfg: PersonalizeConfig, generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        """(scaled latents (b, 4, h, w), captions): batch_size − prior_per_batch personalization images first."""
        parts = [(self.personal, cfg.batch_size - cfg.prior_per_batch)]
        if self.prior is not None and cfg.prior_per_batch:
            parts.append((self.prior, cfg.prior_per_batch))
        latents, captions = [], []
        for cache, count in parts:
            index = torch.randint(0, len(cache.captions), (count,), generator=generator)
            latents.append(cache.sample(index, generator) * self.scaling_factor)
            captions += [cache.captions[i] for i in index.tolist()]
        drop = torch.rand(len(captions), generator=generator) < cfg.caption_dropout
        return torch.cat(latents), ["" if d else c for d, c in zip(drop.tolist(), captions)]


def encode_personalization(
    vae: AutoencoderKL, cfg: PersonalizeConfig, resolution: int, world: WorldConfig = BASE_WORLD
) -> PersonalizationData:
    """Render and encode the personalization images and (with a prior share) as many images of `world`, the base's
    own."""
    looks = personalization_images(cfg.kind, cfg.num_images, cfg.seed, resolution)
    personal = encode_dataset(vae, looks, progress=cfg.progress)
    prior = None
    if cfg.prior_per_batch:
        images = WorldImages(cfg.num_prior_images, cfg.seed, world, resolution, split="train")
        prior = encode_dataset(vae, images, progress=cfg.progress)
    return PersonalizationData(personal, prior, vae.config.scaling_factor)


def fit(
    unet: UNet2DConditionModel,
    trainable: list[torch.nn.Parameter],
    embed: CaptionEmbeddings,
    data: PersonalizationData,
    scheduler: SchedulerMixin,
    cfg: PersonalizeConfig,
) -> TrainLog:
    """Train `trainable` (parameters of `unet`) in place on mixed batches; the UNet ends in eval mode."""
    opt, warmup = warmup_optimizer(trainable, cfg.learning_rate, cfg.warmup_steps, cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    log, start = TrainLog(), time.perf_counter()
    unet.train()
    for _ in (bar := tqdm(range(cfg.steps), desc=f"{cfg.method} {cfg.kind}", disable=not cfg.progress)):
        latents, captions = data.batch(cfg, generator)
        loss = unet_loss(unet, latents, embed(captions), generator, scheduler=scheduler)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        opt.step()
        warmup.step()
        log.losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}")
    log.seconds = time.perf_counter() - start
    unet.eval()
    return log


def add_lora_layers(unet: UNet2DConditionModel, cfg: PersonalizeConfig) -> list[torch.nn.Parameter]:
    """Freeze `unet` and wrap its attention projections in PEFT LoRA layers; returns the LoRA parameters."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    torch.manual_seed(cfg.seed)  # PEFT draws the down projections from the global generator
    unet.add_adapter(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=list(cfg.lora_targets)))
    trainable = [p for name, p in unet.named_parameters() if p.requires_grad]
    if not trainable or any(".lora_" not in name for name, p in unet.named_parameters() if p.requires_grad):
        raise ValueError(f"LoRA targets {cfg.lora_targets} left the UNet with no LoRA-only set of trainable weights")
    return trainable


def train_dreambooth(
    base_folder: str | os.PathLike, out_path: str | os.PathLike, cfg: PersonalizeConfig = PersonalizeConfig()
) -> dict:
    """Fine-tune the base's UNet on the personalization images; write UNet + the base's VAE and text encoder as
    one LDM-layout .safetensors file. Returns the run's figures."""
    return _run(base_folder, out_path, cfg, "dreambooth")


def train_lora(
    base_folder: str | os.PathLike, out_path: str | os.PathLike, cfg: PersonalizeConfig = PersonalizeConfig()
) -> dict:
    """Train a LoRA on the base UNet's attention projections; write it as a kohya .safetensors file. Returns the
    run's figures."""
    return _run(base_folder, out_path, cfg, "lora")


def personalize(
    base_folder: str | os.PathLike, out_path: str | os.PathLike, cfg: PersonalizeConfig = PersonalizeConfig()
) -> dict:
    """`train_dreambooth` or `train_lora`, as `cfg.method` says."""
    return _run(base_folder, out_path, cfg, cfg.method)


def _run(base_folder: str | os.PathLike, out_path: str | os.PathLike, cfg: PersonalizeConfig, method: str) -> dict:
    cfg = replace(cfg, method=method)  # the function called decides; its learning-rate default follows
    start = time.perf_counter()
    out_path = Path(out_path)
    if out_path.suffix != ".safetensors":
        raise ValueError(f"{out_path}: personalized models are written as .safetensors files")
    base, scheduler = _load_base(base_folder)
    device = training_device()
    for module in (base.unet, base.vae, base.text_encoder):
        module.to(device)
    data = encode_personalization(base.vae, cfg, base.traits.native_size)
    embed = CaptionEmbeddings(base.tokenizer, base.text_encoder)
    unet = base.unet
    if method == "lora":
        trainable = add_lora_layers(unet, cfg)
    else:
        trainable = list(unet.parameters())
        unet.requires_grad_(True)

    before = _fixed_losses(unet, embed, data, scheduler)
    log = fit(unet, trainable, embed, data, scheduler, cfg)
    after = _fixed_losses(unet, embed, data, scheduler)
    unet.requires_grad_(False)
    for module in (unet, base.vae, base.text_encoder):
        module.cpu()

    metadata = {"animatediff.personalize": json.dumps(asdict(cfg))}
    dtype = torch.float16 if cfg.fp16 else None
    if method == "lora":
        # kohya-tools and A1111 read these to show a LoRA's rank and alpha.
        metadata |= {
            "ss_network_module": "networks.lora",
            "ss_network_dim": str(cfg.lora_rank),
            "ss_network_alpha": str(cfg.lora_alpha),
        }
        save_kohya_lora(unet, out_path, dtype=dtype, metadata=metadata)
    else:
        metadata["vae_scaling_factor"] = str(base.vae.config.scaling_factor)
        save_single_file(unet, base.vae, base.text_encoder, out_path, dtype=dtype, metadata=metadata)
    return {
        "method": method,
        "kind": cfg.kind,
        "steps": cfg.steps,
        "final_loss": log.mean(50),
        "personal_loss_before": before["personal"],
        "personal_loss_after": after["personal"],
        "prior_loss_before": before.get("prior"),
        "prior_loss_after": after.get("prior"),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "seconds_per_step": log.seconds / cfg.steps,
        "minutes": (time.perf_counter() - start) / 60,
        "path": str(out_path),
    }


def _load_base(base_folder: str | os.PathLike) -> tuple[BaseModel, SchedulerMixin]:
    """The base in float32 (training and the saved weights need full precision), frozen, and a DDPM scheduler on its
    own training schedule (as diffusers' DreamBooth script adds noise; only the betas matter)."""
    scheduler = read_traits(find_base(base_folder)).noise_scheduler()  # before any weights load
    base = load_base(base_folder)
    for module in (base.unet, base.vae, base.text_encoder):
        module.eval().requires_grad_(False)
    return base, scheduler


@torch.no_grad()
def _fixed_losses(
    unet: UNet2DConditionModel, embed: CaptionEmbeddings, data: PersonalizationData, scheduler: SchedulerMixin
) -> dict[str, float]:
    """Loss on the first images of each set at fixed timesteps and noise: comparable before and after."""
    losses = {}
    for name, cache in (("personal", data.personal), ("prior", data.prior)):
        if cache is not None:
            latents = cache.mean[:EVAL_IMAGES] * data.scaling_factor
            text = embed(cache.captions[:EVAL_IMAGES])
            losses[name] = fixed_unet_loss(unet, text, latents, scheduler=scheduler)
    return losses
