"""The animation pipeline and its parts: text (prompt travel), start (noise, FreeNoise, a video, a picture), conditions
(ControlNet, SparseCtrl, IP-Adapter), motion scale, PAG, FreeU (see docs/architecture.md)."""

from animatediff.pipeline.animation import AnimationPipeline
from animatediff.pipeline.conditions import Condition, merge_unet_kwargs, unet_predictor
from animatediff.pipeline.controlnet import ControlNet
from animatediff.pipeline.free_noise import FreeNoise
from animatediff.pipeline.free_u import FreeU
from animatediff.pipeline.image_start import ImageStart
from animatediff.pipeline.ip_adapter import IPAdapter
from animatediff.pipeline.pag import PAG
from animatediff.pipeline.prompt_travel import PromptTravel
from animatediff.pipeline.sparse_ctrl import SparseCtrl
from animatediff.pipeline.start import free_noise_start, noise_start
from animatediff.pipeline.text import TextConditioning, encode_text, prompt_batch
from animatediff.pipeline.video_start import video_start

__all__ = [
    "AnimationPipeline",
    "Condition",
    "ControlNet",
    "FreeNoise",
    "FreeU",
    "ImageStart",
    "IPAdapter",
    "PAG",
    "PromptTravel",
    "SparseCtrl",
    "TextConditioning",
    "encode_text",
    "free_noise_start",
    "merge_unet_kwargs",
    "noise_start",
    "prompt_batch",
    "unet_predictor",
    "video_start",
]
