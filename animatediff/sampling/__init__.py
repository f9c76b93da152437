from animatediff.sampling.guidance import guided
from animatediff.sampling.loop import denoise, initial_noise
from animatediff.sampling.schedulers import make_scheduler, scheduler_names

__all__ = ["denoise", "guided", "initial_noise", "make_scheduler", "scheduler_names"]
