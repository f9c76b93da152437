"""Text2Video-Zero (Khachatryan et al. 2023, arXiv:2303.13439): a training-free text-to-video baseline.

Two changes turn the image model into a video generator, with no training and no motion module:

1. Motion dynamics in the latents (paper Sec. 3.3.1, Algorithm 1). Only the first frame starts from noise. It is
   denoised with guided DDIM to T, and Δt steps further to T'. Frame k copies that latent at T', moved by
   k·λ·δ (a global translation), and goes back to T by DDPM forward noising with fresh noise. The first frame keeps
   its own latent at T.
2. Cross-frame attention (Sec. 3.3.2). Every spatial self-attention takes its keys and values from the first frame of
   the clip, so all frames draw appearance from the same source. All frames are then denoised from T to 0 together.

The paper uses T = 941 and T' = 881 of 1000 with 50 DDIM steps (github.com/Picsart-AI-Research/Text2Video-Zero;
diffusers' `TextToVideoZeroPipeline`, `t1=47`/`t0=44` counted from the end). Two details differ from diffusers on
purpose. First, the noise added back is the exact DDPM marginal, with ᾱ_T/ᾱ_T' = ∏ α[T'+1 .. T]; diffusers
multiplies α[T' .. T−1], one index early. Second, `direction` is where the picture's content moves; diffusers'
positive motion field strengths sample from p + flow, which moves the content up and to the left.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from einops import rearrange, repeat

from animatediff.errors import InputError
from animatediff.models.attention import SharedContextCrossAttnProcessor
from animatediff.models.inflate import AnimationUNet, FrameContext
from animatediff.pipeline import AnimationPipeline, encode_text, prompt_batch, unet_predictor
from animatediff.sampling import denoise, guided, initial_noise, sampling_timesteps

# Unit directions in image coordinates: x to the right, y downwards.
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}
_MOVING = re.compile(r"\bmoving\s+(left|right|up|down)\b", re.IGNORECASE)


def direction_from_prompt(prompt: str) -> tuple[float, float] | None:
    """The unit direction (x right, y down) of "moving left/right/up/down" in a prompt; None if absent or mixed."""
    found = {word.lower() for word in _MOVING.findall(prompt)}
    return DIRECTIONS[found.pop()] if len(found) == 1 else None


class CrossFrameAttnProcessor(SharedContextCrossAttnProcessor):
    """Self-attention in which each frame's queries attend to the keys and values of its clip's first frame."""

    def __init__(self, frames: FrameContext) -> None:
        self.frames = frames

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        f = self.frames.num_frames
        if encoder_hidden_states is None and f is not None and f > 1:
            # ((b f), n, c) -> (b, n, c). The first frame's tokens are a context shared by the clip's frames, which
            # is the case the shared-context processor handles: keys and values are projected once per clip.
            first = rearrange(hidden_states, "(b f) n c -> b f n c", f=f)[:, 0]
            if attention_mask is not None or attn.norm_q is not None or attn.norm_k is not None:
                # The shared path does not support these. The per-frame path needs a context for every frame.
                first = repeat(first, "b n c -> (b f) n c", f=f)
            encoder_hidden_states = first
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


def _spatial_self_attentions(unet: AnimationUNet) -> list[Attention]:
    # Only the 2-D UNet. The motion modules have their own attention and are switched off anyway.
    layers = [
        block.attn1
        for block in unet.unet.modules()
        if isinstance(block, BasicTransformerBlock) and not block.attn1.is_cross_attention
    ]
    for layer in layers:
        # These would normalise the query's tokens but not the first frame's tokens passed in as the context.
        if layer.group_norm is not None or layer.spatial_norm is not None or layer.norm_cross is not None:
            raise InputError("cross-frame attention does not support self-attention with group/spatial/cross norms")
    return layers


@contextmanager
def cross_frame_attention(unet: AnimationUNet) -> Iterator[None]:
    """Inside the block, the 2-D UNet's spatial self-attentions (attn1) attend to each clip's first frame."""
    layers = _spatial_self_attentions(unet)
    previous = [layer.processor for layer in layers]
    processor = CrossFrameAttnProcessor(unet.frames)
    for layer in layers:
        layer.set_processor(processor)
    try:
        yield
    finally:
        for layer, old in zip(layers, previous, strict=True):
            layer.set_processor(old)


def translate(
    latent: torch.Tensor,
    num_frames: int,
    direction: tuple[float, float] | None,
    strength: float,
    mode: str = "nearest",
) -> torch.Tensor:
    """(b, c, h, w) → (b, c, f, h, w). Frame k is `latent` moved by k·strength·direction, in units of the shorter side.

    One scale for both axes keeps a diagonal at 45° on non-square latents. Pixels that come in from outside repeat
    the border. The default "nearest" sampling moves values without mixing them, as the original code does. At T'
    the latent is still mostly noise, and bilinear mixing would lower its variance and blur the frames.
    """
    b, c, h, w = latent.shape
    if direction is None or strength == 0:
        return repeat(latent, "b c h w -> b c f h w", f=num_frames)
    dx, dy = direction
    norm = math.hypot(dx, dy)
    if norm == 0:
        raise InputError("direction (0, 0) has no direction; pass None for no translation")
    k = torch.arange(num_frames, dtype=torch.float32, device=latent.device)
    shift = k * strength * min(h, w)  # pixels along the direction, per frame
    theta = torch.zeros(num_frames, 2, 3, device=latent.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    # Output pixel p samples the input at p − shift, so the content moves along +direction. grid_sample coordinates
    # span 2 across a side: s pixels is 2s/w.
    theta[:, 0, 2] = -2 * shift * (dx / norm) / w
    theta[:, 1, 2] = -2 * shift * (dy / norm) / h
    grid = F.affine_grid(theta, [num_frames, c, h, w], align_corners=False)  # (f, h, w, 2)
    frames = repeat(latent.float(), "b c h w -> (b f) c h w", f=num_frames)
    grid = repeat(grid, "f h w two -> (b f) h w two", b=b)
    moved = F.grid_sample(frames, grid, mode=mode, padding_mode="border", align_corners=False)
    return rearrange(moved, "(b f) c h w -> b c f h w", f=num_frames).to(latent.dtype)


def renoise(
    latents: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor, t_from: int, t_to: int
) -> torch.Tensor:
    """DDPM forward noising q(x_to | x_from) = N(√(ᾱ_to/ᾱ_from)·x_from, (1 − ᾱ_to/ᾱ_from)·I), for t_to ≥ t_from."""
    if t_to < t_from:
        raise InputError(f"forward noising goes up in time; got {t_from} → {t_to}")
    ratio = (alphas_cumprod[t_to] / alphas_cumprod[t_from]).item()
    out = math.sqrt(ratio) * latents.float() + math.sqrt(1.0 - ratio) * noise.float()
    return out.to(latents.dtype)


def motion_steps(timesteps: torch.Tensor, t0: int, t1: int) -> tuple[int, int]:
    """Indices in the descending `timesteps` of T (the first step at or below t1) and T' (the first at or below t0).

    With 50 DDIM steps the defaults give exactly the paper's T = 941 and T' = 881. With 25 steps they give 921 and
    881, one step apart. The two are equal (Δt = 0, no motion) when the grid has no step between t0 and t1.
    """
    if not 0 <= t0 <= t1:
        raise InputError(f"need 0 ≤ t0 ≤ t1 (T' ≤ T); got t0={t0}, t1={t1}")
    i_t1 = int((timesteps > t1).sum())
    i_t0 = int((timesteps > t0).sum())
    if i_t0 >= len(timesteps):
        raise InputError(f"t0={t0} lies below the last of the {len(timesteps)} steps ({int(timesteps[-1])})")
    return i_t1, i_t0


@torch.no_grad()
def text2video_zero(
    pipe: AnimationPipeline,
    prompt: str | list[str],
    negative_prompt: str | list[str] | None = None,
    num_frames: int = 16,
    height: int | None = None,
    width: int | None = None,
    num_inference_steps: int = 25,
    guidance_scale: float | None = None,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    direction: tuple[float, float] | None = (1.0, 1.0),
    strength: float = 0.02,
    t0: int = 881,
    t1: int = 941,
    decode_chunk_size: int = 16,
    progress: bool = False,
) -> np.ndarray:
    """Text2Video-Zero with the pipeline's image model. Frames are float32 in [0, 1], shape (videos, frames, H, W, 3).

    The motion module is off during the call. `direction` (x right, y down; normalised) and `strength` (the fraction
    of the latent's shorter side moved per frame) set the translation. The default 0.02 moves 16 frames about 30% of
    the side. None or 0 means no translation. `t0` and `t1` are T' and T in training timesteps.
    `guidance_scale`: None takes the pipeline's (`pipe.guidance_scale`).
    """
    guidance_scale = pipe.guidance_scale if guidance_scale is None else guidance_scale
    height = height or pipe.native_size
    width = width or pipe.native_size
    # The motion module is off, so its frame limit does not apply. Check sizes and steps as for a single frame.
    pipe.check_inputs(1, height, width, num_inference_steps)
    if num_frames < 1:
        raise InputError(f"num_frames must be at least 1, got {num_frames}")
    if strength < 0:
        raise InputError(f"strength is a distance per frame and cannot be negative; got {strength}")
    prompts, negatives = prompt_batch(prompt, negative_prompt)
    # The paper's sampler: DDIM on the pipeline's noise schedule, whatever scheduler the pipeline samples with.
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    steps = sampling_timesteps(scheduler, num_inference_steps, device=pipe.device)
    i_t1, i_t0 = motion_steps(steps, t0, t1)
    if generator is None:
        generator = torch.Generator("cpu")
        if seed is not None:
            generator.manual_seed(seed)

    # 1. Text.
    text = encode_text(
        pipe.tokenizer, pipe.text_encoder, prompts, negatives, guidance_scale > 1.0, pipe.device, pipe.dtype
    )

    # 2. Noise for the first frame only: (b, 4, 1, h/8, w/8), the same draw `pipe` makes for a one-frame clip.
    s = pipe.vae_scale_factor
    b, c, h, w = len(prompts), pipe.unet.config.in_channels, height // s, width // s
    x_start = initial_noise((b, c, 1, h, w), generator=generator, device=pipe.device, dtype=pipe.dtype)

    motion_enabled = pipe.unet.motion_enabled
    pipe.unet.motion_enabled = False
    try:
        with cross_frame_attention(pipe.unet):
            denoiser = guided(unet_predictor(pipe.unet), text.uncond, text.cond, guidance_scale)
            # 3. The first frame alone: guided DDIM down to T, then Δt steps more to T'.
            x_start = x_start * scheduler.init_noise_sigma
            first_t1 = denoise(denoiser, scheduler, x_start, steps[:i_t1], progress=progress)
            first_t0 = denoise(denoiser, scheduler, first_t1, steps[i_t1:i_t0], progress=progress)

            # 4. Frames 1.. copy the first frame's latent at T', translated, and go back to T with fresh noise. The
            # noise is drawn frame by frame, (b, f−1, c, h, w), as diffusers draws it.
            moved = translate(first_t0[:, :, 0], num_frames, direction, strength)[:, :, 1:]
            fresh = initial_noise((b, num_frames - 1, c, h, w), generator=generator, device=pipe.device)
            others = renoise(moved, fresh.transpose(1, 2), scheduler.alphas_cumprod, int(steps[i_t0]), int(steps[i_t1]))
            latents = torch.cat([first_t1, others], dim=2)  # (b, c, f, h, w)

            # 5. All frames from T to 0, with cross-frame attention.
            latents = denoise(denoiser, scheduler, latents, steps[i_t1:], progress=progress)
    finally:
        pipe.unet.motion_enabled = motion_enabled

    # 6. Decode frame chunks.
    return pipe.decode(latents, decode_chunk_size)
