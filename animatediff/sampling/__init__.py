from animatediff.sampling.context import context_windows, windowed
from animatediff.sampling.guidance import guided
from animatediff.sampling.loop import denoise, initial_noise
from animatediff.sampling.schedulers import make_scheduler, scheduler_names

__all__ = ["context_windows", "denoise", "windowed", "guided", "initial_noise", "make_scheduler", "scheduler_names"]
