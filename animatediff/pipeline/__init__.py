"""The animation pipeline and its parts: text, start, conditions (see docs/architecture.md)."""

from animatediff.pipeline.animation import AnimationPipeline
from animatediff.pipeline.conditions import Condition, merge_unet_kwargs, unet_predictor
from animatediff.pipeline.start import noise_start
from animatediff.pipeline.text import TextConditioning, encode_text, prompt_batch

__all__ = [
    "AnimationPipeline",
    "Condition",
    "TextConditioning",
    "encode_text",
    "merge_unet_kwargs",
    "noise_start",
    "prompt_batch",
    "unet_predictor",
]
