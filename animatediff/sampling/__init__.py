from animatediff.sampling.context import context_windows, windowed
from animatediff.sampling.guidance import guided
from animatediff.sampling.loop import denoise, initial_noise
from animatediff.sampling.schedulers import (
    denoising_target,
    for_model,
    make_scheduler,
    model_noise_settings,
    scheduler_names,
)

__all__ = [
    "context_windows",
    "denoise",
    "denoising_target",
    "for_model",
    "guided",
    "initial_noise",
    "make_scheduler",
    "model_noise_settings",
    "scheduler_names",
    "windowed",
]
