"""Which timesteps a training step draws, and how much each one's loss counts."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

from animatediff.train.config import OptimConfig


def noise_scheduler(optim: OptimConfig, prediction_type: str, zero_snr: bool) -> DDPMScheduler:
    """The training noise schedule: the config's betas (AnimateDiff's linear 0.00085 → 0.012 by default), the base's
    prediction type, and zero-terminal-SNR rescaling when the run asks for it."""
    return DDPMScheduler(
        num_train_timesteps=optim.num_train_timesteps,
        beta_start=optim.beta_start,
        beta_end=optim.beta_end,
        beta_schedule=optim.beta_schedule,
        prediction_type=prediction_type,
        rescale_betas_zero_snr=zero_snr,
    )


def timestep_probabilities(optim: OptimConfig) -> torch.Tensor:
    """The probability of drawing each training timestep under `optim.timestep_bias`."""
    weights = torch.ones(optim.num_train_timesteps, dtype=torch.float64)
    if optim.timestep_bias != "none":
        count = max(1, round(optim.timestep_bias_portion * optim.num_train_timesteps))
        favoured = slice(-count, None) if optim.timestep_bias == "later" else slice(0, count)
        weights[favoured] *= optim.timestep_bias_multiplier
    return weights / weights.sum()


def draw_timesteps(count: int, optim: OptimConfig, generator: torch.Generator) -> torch.Tensor:
    """`count` training timesteps from `timestep_probabilities`; without a bias, the plain uniform randint."""
    if optim.timestep_bias == "none" or optim.timestep_bias_multiplier == 1:
        return torch.randint(0, optim.num_train_timesteps, (count,), generator=generator)
    return torch.multinomial(timestep_probabilities(optim), count, replacement=True, generator=generator)


def timestep_weights(
    scheduler: DDPMScheduler, timesteps: torch.Tensor, prediction_type: str, optim: OptimConfig
) -> torch.Tensor:
    """The loss weight of each clip's timestep under `optim.loss_weighting`, for an ε or v target."""
    alphas = scheduler.alphas_cumprod.to(torch.float64)[timesteps.cpu()]
    snr = alphas / (1 - alphas)
    # A target's MSE is the x0 error times SNR (ε) or SNR + 1 (v); dividing by that and multiplying by the chosen
    # x0 weight λ(SNR) gives the clip's weight.
    target_scale = snr + 1 if prediction_type == "v_prediction" else snr
    if optim.loss_weighting == "min_snr":
        x0_weight = snr.clamp(max=optim.snr_gamma)
    elif optim.loss_weighting == "truncated_snr":
        x0_weight = snr.clamp(min=1.0)
    else:
        return torch.ones_like(snr, dtype=torch.float32)
    weights = (x0_weight / target_scale).clamp(max=optim.max_loss_weight)
    return weights.float()
