"""The world's VAE: trained on the world's images, then its latents cached and scaled for the UNet stage.

The VAE learns reconstruction with a tiny KL term, the object's pixels weighted above the plain background
(`foreground_weights`), then a short L1 phase sharpens what a mean square blurs. Its latents are shifted and scaled
to zero mean and unit spread per channel (SD's 0.18215 was found the same way).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from animatediff.world.loops import TrainLog, endless_batches, rendering_workers, warmup_optimizer


@dataclass(frozen=True)
class VaeTrainConfig:
    """How the VAE is trained."""

    steps: int = 1000
    """Optimizer steps."""
    batch_size: int = 32
    """Images per step."""
    lr: float = 1e-3
    """AdamW learning rate (constant after the warmup)."""
    warmup_steps: int = 50
    """Steps of linear learning-rate warmup."""
    kl_weight: float = 1e-6
    """Weight of the KL term (per latent element) against the per-pixel reconstruction loss."""
    sharpen_steps: int = 500
    """Steps after the MSE phase with an L1 loss and the learning rate decaying to zero (cosine). MSE alone
    leaves the small, faint parts (thin outlines, motion trails, the arms of a cross) blurred away, as they
    weigh little in a mean square; L1 pushes every pixel's error equally."""
    object_weight: float = 10.0
    """How much more a pixel of the object (and of its trail, and a pixel around them) counts in the
    reconstruction loss than one of the plain background (`foreground_weights`). At 1 every pixel counts the same,
    and the object, a tenth of the image, is what the VAE learns last: it gives back a blob for a square or a cross.
    Both phases use it."""
    seed: int = 0
    """Seeds the batch order and the posterior samples."""
    progress: bool = True
    """Show a tqdm bar."""


def foreground_weights(pixels: torch.Tensor, object_weight: float, threshold: float = 0.1) -> torch.Tensor:
    """Per-pixel loss weights (b, 1, H, W) for world images (b, 3, H, W) in [-1, 1]: `object_weight` where a pixel
    differs from the image's background by more than `threshold` in some channel, or borders such a pixel, else 1.
    The world's backgrounds are plain, so the median of an image's border pixels is its background colour."""
    border = torch.cat([pixels[:, :, 0], pixels[:, :, -1], pixels[:, :, :, 0], pixels[:, :, :, -1]], dim=2)
    background = border.median(dim=2).values[:, :, None, None]
    mask = ((pixels - background).abs().amax(dim=1, keepdim=True) > threshold).float()
    mask = F.max_pool2d(mask, 3, stride=1, padding=1)  # the edge pixels, where a shape is told from a blob
    return 1 + (object_weight - 1) * mask


def reconstruction_loss(
    recon: torch.Tensor, pixels: torch.Tensor, l1: bool = False, object_weight: float = 1.0
) -> torch.Tensor:
    """MSE (or L1 with `l1`) of a reconstruction, each pixel weighted by `foreground_weights` unless
    `object_weight` is 1; the weights are normalized to mean 1, so the loss keeps its scale."""
    if object_weight == 1.0:
        return F.l1_loss(recon, pixels) if l1 else F.mse_loss(recon, pixels)
    weights = foreground_weights(pixels, object_weight)
    error = (recon - pixels).abs() if l1 else (recon - pixels) ** 2
    return (weights * error).mean() / weights.mean()


def vae_loss(
    vae: AutoencoderKL,
    pixels: torch.Tensor,
    kl_weight: float,
    generator: torch.Generator | None = None,
    l1: bool = False,
    object_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, plain reconstruction MSE) for pixels (b, 3, H, W) in [-1, 1], decoding a posterior sample;
    the loss reconstructs by `reconstruction_loss`."""
    posterior = vae.encode(pixels.to(vae.device)).latent_dist
    recon = vae.decode(posterior.sample(generator)).sample
    pixels = pixels.to(recon.device)
    mse = F.mse_loss(recon, pixels)
    reconstruction = reconstruction_loss(recon, pixels, l1, object_weight)
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    return reconstruction + kl_weight * kl, mse


@torch.no_grad()
def reconstruction_mse(vae: AutoencoderKL, pixels: torch.Tensor) -> float:
    """Reconstruction MSE through the posterior mean (deterministic), pixels in [-1, 1]."""
    pixels = pixels.to(vae.device)
    recon = vae.decode(vae.encode(pixels).latent_dist.mean).sample
    return F.mse_loss(recon, pixels).item()


def train_vae(vae: AutoencoderKL, dataset: Dataset, cfg: VaeTrainConfig = VaeTrainConfig()) -> TrainLog:
    """Train `vae` in place on `dataset`'s images: the MSE phase, then the L1 sharpening phase."""
    log = _vae_phase(vae, dataset, cfg, cfg.steps, l1=False)
    sharpened = sharpen_vae(vae, dataset, cfg)
    return TrainLog(log.losses + sharpened.losses, log.seconds + sharpened.seconds)


def sharpen_vae(vae: AutoencoderKL, dataset: Dataset, cfg: VaeTrainConfig = VaeTrainConfig()) -> TrainLog:
    """The L1 phase alone (its own seeds), so a VAE saved after the MSE phase can be finished later."""
    return _vae_phase(vae, dataset, cfg, cfg.sharpen_steps, l1=True)


def _vae_phase(vae: AutoencoderKL, dataset: Dataset, cfg: VaeTrainConfig, steps: int, l1: bool) -> TrainLog:
    log = TrainLog()
    if steps <= 0:
        return log
    vae.train().requires_grad_(True)
    # The L1 phase decays to zero: its last steps polish instead of jumping around the optimum.
    opt, schedule = warmup_optimizer(vae.parameters(), cfg.lr, cfg.warmup_steps, cosine_steps=steps if l1 else None)
    seed = cfg.seed + (1 if l1 else 0)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    batches = endless_batches(dataset, cfg.batch_size, seed)
    for _ in (bar := tqdm(range(steps), desc="VAE (L1)" if l1 else "VAE", disable=not cfg.progress)):
        loss, mse = vae_loss(vae, next(batches)["pixel_values"], cfg.kl_weight, generator, l1, cfg.object_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        log.losses.append(mse.item())
        bar.set_postfix(mse=f"{mse.item():.4f}")
    log.seconds = time.perf_counter() - start
    vae.eval().requires_grad_(False)
    return log


@dataclass
class LatentCache:
    """Every dataset image's posterior (mean, std), encoded once, with its caption."""

    mean: torch.Tensor
    std: torch.Tensor
    captions: list[str]

    def sample(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean, std = self.mean[index], self.std[index]
        return mean + std * torch.randn(mean.shape, generator=generator)


@torch.no_grad()
def encode_dataset(vae: AutoencoderKL, dataset: Dataset, batch_size: int = 128, progress: bool = True) -> LatentCache:
    """Encode all images once: the UNet then trains for many epochs without touching the VAE encoder. The cache
    lives on the CPU, where its samples are drawn."""
    means, stds, captions = [], [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=rendering_workers())
    for batch in tqdm(loader, desc="encode", disable=not progress):
        posterior = vae.encode(batch["pixel_values"].to(vae.device)).latent_dist
        means.append(posterior.mean.cpu())
        stds.append(posterior.std.cpu())
        captions += batch["text"]
    return LatentCache(torch.cat(means), torch.cat(stds), captions)


def set_scaling_factor(vae: AutoencoderKL, cache: LatentCache, seed: int = 0) -> float:
    """Set `vae.config.scaling_factor` to 1 / std of the latents, so the UNet sees unit-variance latents."""
    latents = cache.sample(torch.arange(len(cache.captions)), torch.Generator().manual_seed(seed))
    factor = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=factor)
    return factor


@torch.no_grad()
def standardize_latents(vae: AutoencoderKL, cache: LatentCache) -> tuple[torch.Tensor, torch.Tensor]:
    """Make the VAE's latents zero-mean with unit spread per channel, exactly, by folding the shift and scale into
    its 1×1 `quant_conv` (encoder side) and `post_quant_conv` (decoder side); `cache` is rewritten to match.

    Why: the world's latents came out with per-channel means of 1–2 standard deviations. AnimateDiff's linear
    schedule keeps √ᾱ_T ≈ 0.04 of the signal at the last step, so a UNet trained on such latents reads the
    leftover mean in x_T, while sampling starts from zero-mean noise: the first build at 16×16 latents sampled
    colour noise. The folded form keeps the VAE a plain SD `AutoencoderKL` (SD1.x pipelines apply no latent
    shift). Returns the (mean, std) per channel that were removed."""
    c = vae.config.latent_channels
    mean, std = cache.mean.mean(dim=(0, 2, 3)), cache.mean.std(dim=(0, 2, 3)).clamp_min(1e-6)
    quant, post = vae.quant_conv, vae.post_quant_conv
    on_vae = {"device": quant.weight.device, "dtype": quant.weight.dtype}
    shift, scale = mean.to(**on_vae), std.to(**on_vae)
    # Encoder: the moments' mean half becomes (m − mean)/std, its log-variance half shifts by −2·log(std).
    quant.weight[:c] /= scale.view(-1, 1, 1, 1)
    quant.bias[:c] = (quant.bias[:c] - shift) / scale
    quant.bias[c:] -= 2 * scale.log()
    # Decoder: it receives std·z + mean, so W·(std·z + mean) + b = (W·std)·z + (W·mean + b).
    post.bias += post.weight[:, :, 0, 0] @ shift
    post.weight *= scale.view(1, -1, 1, 1)
    cache.mean = (cache.mean - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    cache.std = cache.std / std.view(1, -1, 1, 1)
    return mean, std
