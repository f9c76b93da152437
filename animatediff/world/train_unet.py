"""The world's image UNet (and its text encoder, jointly): ε- or v-prediction on the cached VAE latents.

The UNet learns on AnimateDiff's linear betas (rescaled to zero terminal SNR for v-prediction), the schedule the
project samples with, with 10% of captions dropped so classifier-free guidance works. The text encoder trains with
it: SD's CLIP comes pretrained, ours has to learn here, and trained jointly it puts the motion words where the UNet
reads them. Words the base never sees in captions (the personalization looks: "star", "outlined") keep their random
embeddings, which DreamBooth and LoRA learn to read with the encoder frozen again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import SchedulerMixin, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from animatediff.sampling import denoising_target
from animatediff.text_encoding import encode_prompts
from animatediff.world.base_model import official_scheduler
from animatediff.world.loops import TrainLog, warmup_optimizer
from animatediff.world.train_vae import LatentCache


@dataclass(frozen=True)
class UnetTrainConfig:
    """How the UNet (and optionally the text encoder) is trained on VAE latents."""

    steps: int = 8000
    """Optimizer steps."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 5e-4
    """AdamW learning rate (constant after the warmup)."""
    warmup_steps: int = 50
    """Steps of linear learning-rate warmup."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    caption_dropout: float = 0.1
    """Probability that a caption is replaced by "" (for classifier-free guidance)."""
    ema_decay: float | None = 0.999
    """Decay of the weight average that gets saved; None saves the raw weights."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    train_text_encoder: bool = True
    """Train the text encoder jointly; False keeps it random and frozen (each caption then encodes once)."""
    zero_terminal_snr: bool = True
    """Train for v-prediction on the linear betas rescaled to zero terminal SNR (`official_scheduler`): no clip or
    image leaks into the last timestep, so what a sample starts from is decided by the caption, not read from the
    noise. The base's scheduler config records it, and sampling and the motion stage follow it."""
    seed: int = 0
    """Seeds the batch order, timesteps, noise and caption dropout."""
    progress: bool = True
    """Show a tqdm bar."""


class CaptionEmbeddings:
    """Text-encoder outputs per caption; with a frozen encoder each distinct caption is encoded once."""

    def __init__(self, tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, cache: bool = True) -> None:
        self.tokenizer, self.text_encoder, self.cache = tokenizer, text_encoder, cache
        self._memo: dict[str, torch.Tensor] = {}

    def _encode(self, captions: list[str]) -> torch.Tensor:
        return encode_prompts(self.tokenizer, self.text_encoder, captions)

    def __call__(self, captions: list[str]) -> torch.Tensor:
        """(len(captions), 77, D)."""
        if not self.cache:
            return self._encode(captions)
        new = sorted({c for c in captions if c not in self._memo})
        if new:
            with torch.no_grad():
                for caption, embedding in zip(new, self._encode(new)):
                    self._memo[caption] = embedding
        return torch.stack([self._memo[c] for c in captions])


def unet_loss(
    unet: UNet2DConditionModel,
    latents: torch.Tensor,
    text: torch.Tensor,
    generator: torch.Generator,
    timesteps: torch.Tensor | None = None,
    scheduler: SchedulerMixin | None = None,
) -> torch.Tensor:
    """The denoising MSE on `scheduler`'s noise schedule (AnimateDiff's linear betas by default) against its
    prediction type's target (ε, or v); latents already scaled. Timesteps and noise are drawn on the CPU
    `generator`, and everything then moves to the UNet's device."""
    scheduler = scheduler or official_scheduler()
    if timesteps is None:
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    latents, noise, timesteps, text = (x.to(unet.device) for x in (latents, noise, timesteps, text))
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = denoising_target(scheduler, latents, noise, timesteps)
    return F.mse_loss(unet(noisy, timesteps, text).sample, target)


def train_unet(
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    latents: LatentCache,
    scaling_factor: float,
    cfg: UnetTrainConfig = UnetTrainConfig(),
) -> TrainLog:
    """Train `unet` in place on cached latents; with `cfg.ema_decay` it ends holding the averaged weights."""
    trainable = list(unet.parameters())
    unet.train().requires_grad_(True)
    text_encoder.requires_grad_(cfg.train_text_encoder).train(cfg.train_text_encoder)
    if cfg.train_text_encoder:
        trainable += list(text_encoder.parameters())
    embed = CaptionEmbeddings(tokenizer, text_encoder, cache=not cfg.train_text_encoder)
    opt, warmup = warmup_optimizer(trainable, cfg.lr, cfg.warmup_steps, cfg.weight_decay)
    ema = EMAModel(trainable, decay=cfg.ema_decay) if cfg.ema_decay else None
    generator = torch.Generator().manual_seed(cfg.seed)
    n = len(latents.captions)
    if n < cfg.batch_size:
        raise ValueError(f"{n} cached images are fewer than one batch of {cfg.batch_size}")
    scheduler = official_scheduler(cfg.zero_terminal_snr)
    log, start = TrainLog(), time.perf_counter()
    for _ in (bar := tqdm(range(cfg.steps), desc="UNet", disable=not cfg.progress)):
        index = torch.randint(0, n, (cfg.batch_size,), generator=generator)
        x = latents.sample(index, generator) * scaling_factor
        drop = torch.rand(cfg.batch_size, generator=generator) < cfg.caption_dropout
        captions = ["" if d else latents.captions[i] for d, i in zip(drop.tolist(), index.tolist())]
        loss = unet_loss(unet, x, embed(captions), generator, scheduler=scheduler)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        opt.step()
        warmup.step()
        if ema is not None:
            ema.step(trainable)
        log.losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}")
    if ema is not None:
        ema.copy_to(trainable)
    log.seconds = time.perf_counter() - start
    unet.eval().requires_grad_(False)
    text_encoder.eval().requires_grad_(False)
    return log


@torch.no_grad()
def fixed_unet_loss(
    unet: UNet2DConditionModel,
    text: torch.Tensor,
    latents: torch.Tensor,
    seed: int = 0,
    repeats: int = 4,
    scheduler: SchedulerMixin | None = None,
) -> float:
    """The UNet loss on fixed latents, timesteps and noise: comparable before and after training."""
    generator = torch.Generator().manual_seed(seed)
    timesteps = torch.linspace(0, 999, latents.shape[0] * repeats).long()
    x = latents.repeat(repeats, 1, 1, 1)
    return unet_loss(unet, x, text.repeat(repeats, 1, 1), generator, timesteps, scheduler).item()
