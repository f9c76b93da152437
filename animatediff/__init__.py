"""AnimateDiff: animate personalized Stable Diffusion 1.x models with a trained motion module."""

__version__ = "0.1.0"
