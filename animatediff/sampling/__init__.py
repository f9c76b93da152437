"""Sampling as plain functions: schedulers by name, classifier-free guidance, context windows, the loop."""

from animatediff.sampling.context import ContextSchedule, context_windows, windowed
from animatediff.sampling.free_init import FreeInit, free_init_denoise, reinitialize
from animatediff.sampling.guidance import guided
from animatediff.sampling.loop import Denoiser, Predictor, denoise, initial_noise, sampling_timesteps
from animatediff.sampling.schedulers import (
    denoising_target,
    for_model,
    make_scheduler,
    model_noise_settings,
    scheduler_names,
)

__all__ = [
    "ContextSchedule",
    "Denoiser",
    "FreeInit",
    "Predictor",
    "context_windows",
    "denoise",
    "denoising_target",
    "for_model",
    "free_init_denoise",
    "guided",
    "initial_noise",
    "make_scheduler",
    "model_noise_settings",
    "reinitialize",
    "sampling_timesteps",
    "scheduler_names",
    "windowed",
]
