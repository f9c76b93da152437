"""Network inflation: run a 2-D diffusers UNet on videos and insert motion modules (paper Sec. 4.1).

Frames are folded into the batch axis, so every convolution and spatial attention of the image model sees
each frame on its own; only the motion modules look across frames. The 2-D UNet is used as loaded — its
weights are neither copied nor changed. Motion modules are attached with forward hooks at the official
positions (github.com/guoyww/AnimateDiff, `animatediff/models/unet_blocks.py`):

- down/up blocks with attention: after each (ResNet → spatial transformer) pair;
- down/up blocks without attention: after each ResNet;
- mid block (v2): after the spatial transformer, before the second ResNet.

v1 modules were trained with the ResNets' GroupNorms computing statistics over the whole clip; `clip_norms`
reproduces that by switching those norms (same parameters) to clip-wide statistics. `motion_scale` keeps a
fraction of what the modules add, per block group (`motion_scale.py`).

Inflation also installs faster equivalents of the 2-D layers' default paths, undone by `remove`: the spatial
attention processors of `attention.py` and the split GEGLUs of `feed_forward.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from einops import rearrange, repeat
from torch import nn
from torch.utils.checkpoint import checkpoint

from animatediff.errors import InputError
from animatediff.models.attention import SharedContextCrossAttnProcessor, fuse_self_attention, share_text_context
from animatediff.models.attention_scale import AttentionScale
from animatediff.models.feed_forward import restore_geglus, split_geglus
from animatediff.models.free_noise import AttentionWindows
from animatediff.models.motion_module import MotionModule
from animatediff.models.motion_modules import MotionModules
from animatediff.models.motion_scale import MotionScale, motion_group, motion_scales

FAMILY_CHANNELS = {(320, 640, 1280, 1280): "SD1.x", (320, 640, 1280): "SDXL"}
"""The UNet channels of each base family, as motion modules and bases state them."""


class FrameContext:
    """How many frames the current batch folds; None outside a video forward pass (plain 2-D behaviour)."""

    def __init__(self) -> None:
        self.num_frames: int | None = None


class ClipGroupNorm(nn.GroupNorm):
    """A GroupNorm whose statistics span all frames of a clip (the official v1 "non-inflated" ResNet norm)."""

    frames: FrameContext

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.frames.num_frames
        if f is None:
            return super().forward(x)
        clip = rearrange(x, "(b f) c h w -> b c f h w", f=f)
        clip = F.group_norm(clip, self.num_groups, self.weight, self.bias, self.eps)
        return rearrange(clip, "b c f h w -> (b f) c h w")


def _resnet_norms(unet: UNet2DConditionModel) -> list[nn.GroupNorm]:
    norms = [
        m
        for name, m in unet.named_modules()
        if isinstance(m, nn.GroupNorm) and ".resnets." in name and name.rsplit(".", 1)[-1] in ("norm1", "norm2")
    ]
    if isinstance(unet.conv_norm_out, nn.GroupNorm):
        norms.append(unet.conv_norm_out)
    return norms


def _check_fits(unet: UNet2DConditionModel, motion: MotionModules) -> None:
    cfg = motion.config
    unet_channels = tuple(unet.config.block_out_channels)
    if unet_channels != cfg.block_out_channels:
        found, expected = FAMILY_CHANNELS.get(cfg.block_out_channels), FAMILY_CHANNELS.get(unet_channels)
        if found and expected:
            raise InputError(
                f"this motion module is for {found} (UNet channels {cfg.block_out_channels}) but the base is "
                f"{expected} ({unet_channels}); use an {expected} motion module"
            )
        raise InputError(
            f"motion module was built for UNet channels {cfg.block_out_channels}, but the base UNet has "
            f"{unet_channels}; use a motion module made for this base model (SD1.x: 320, 640, 1280, 1280; "
            "SDXL: 320, 640, 1280)"
        )
    for kind, blocks, expected in (
        ("down", unet.down_blocks, cfg.layers_per_block),
        ("up", unet.up_blocks, cfg.layers_per_block + 1),
    ):
        for i, block in enumerate(blocks):
            if len(block.resnets) != expected:
                raise InputError(
                    f"motion module expects {expected} layers in UNet {kind} block {i}, "
                    f"the base UNet has {len(block.resnets)}"
                )
    if cfg.use_mid_block and getattr(unet.mid_block, "attentions", None) is None:
        raise InputError("motion module has a mid-block module but the base UNet's mid block has no attention")


def _attachment_points(unet: UNet2DConditionModel, motion: MotionModules) -> Iterator[tuple[nn.Module, MotionModule]]:
    """(layer of the 2-D UNet, motion module that runs right after it), in the official positions."""
    for unet_blocks, motion_blocks in ((unet.down_blocks, motion.down_blocks), (unet.up_blocks, motion.up_blocks)):
        for block, mblock in zip(unet_blocks, motion_blocks):
            layers = getattr(block, "attentions", None) or block.resnets
            yield from zip(layers, mblock.motion_modules)
    if motion.mid_block is not None:
        yield unet.mid_block.attentions[0], motion.mid_block.motion_modules[0]


class AnimationUNet(nn.Module):
    """A 2-D UNet with motion modules: (b, c, f, h, w) noisy latents → (b, c, f, h, w) prediction."""

    def __init__(
        self, unet: UNet2DConditionModel, motion_modules: MotionModules, clip_norms: bool | None = None
    ) -> None:
        super().__init__()
        _check_fits(unet, motion_modules)
        self.unet = unet
        self.motion_modules = motion_modules
        self.frames = FrameContext()
        self.motion_enabled = True
        self.gradient_checkpointing = False
        self.free_noise: AttentionWindows | None = None  # FreeNoise's windowed motion attention; None: off
        self._motion_scales = motion_scales(1.0)
        self._hooks = [
            layer.register_forward_hook(self._motion_hook(module, motion_group(motion_modules, module)))
            for layer, module in _attachment_points(unet, motion_modules)
        ]
        self._num_cross_attentions = sum(isinstance(m, Attention) and m.is_cross_attention for m in unet.modules())
        self._shared_context = share_text_context(unet)
        self._fused_self_attention = fuse_self_attention(unet)
        self._split_geglus = split_geglus(unet)
        self._clip_norms = False
        self.set_clip_norms(motion_modules.config.version == "v1" if clip_norms is None else clip_norms)

    @property
    def config(self):  # noqa: ANN201 - the 2-D UNet's FrozenDict config, for code written against diffusers
        return self.unet.config

    @property
    def max_frames(self) -> int:
        return self.motion_modules.max_frames

    def _motion_hook(self, module: MotionModule, group: str):  # noqa: ANN202
        def hook(_layer: nn.Module, _args: tuple, output):  # noqa: ANN001, ANN202
            f = self.frames.num_frames
            scale = self._motion_scales[group]
            if f is None or not self.motion_enabled or scale == 0:
                return output
            run = module
            if self.gradient_checkpointing and torch.is_grad_enabled():
                run = partial(checkpoint, module, use_reentrant=False)  # f passed as an argument, kept for backward
            if scale != 1:
                run = partial(_scaled, run, scale)
            return on_hidden_states(output, lambda x: run(x, f))

        return hook

    def set_free_noise(self, windows: AttentionWindows | None) -> None:
        """FreeNoise (`models/free_noise.py`): every motion module attends within these windows of frames and fuses
        them, so a clip may be longer than the position encoding; None: all frames at once (the default)."""
        if windows is not None and windows.length > self.max_frames:
            raise InputError(
                f"FreeNoise context_length {windows.length}: the motion module sees at most {self.max_frames} frames"
            )
        for module in self.motion_modules.modules():
            if isinstance(module, MotionModule):
                module.set_attention_windows(windows)
        self.free_noise = windows

    @property
    def motion_scale(self) -> float | dict[str, float]:
        """How much of what the motion modules add is kept (`models/motion_scale.py`): out = x + s·(module(x) − x).
        One number, or {"down": s, "mid": s, "up": s} per block group; 0 is the image model alone, 1 (the
        default) the modules as trained. Reads as one number when every group has the same."""
        values = set(self._motion_scales.values())
        return values.pop() if len(values) == 1 else dict(self._motion_scales)

    @motion_scale.setter
    def motion_scale(self, scale: MotionScale) -> None:
        self._motion_scales = motion_scales(scale)

    @contextmanager
    def scaled_attention(self, scale: AttentionScale | None) -> Iterator[None]:
        """The motion modules' temporal attention scale (`models/attention_scale.py`) at `scale` inside the block,
        put back after it: a number, or a map (f, h, w) over the call's frames; None leaves it as it is."""
        modules = [m for m in self.motion_modules.modules() if isinstance(m, MotionModule)]
        if scale is None:
            yield
            return
        if any(m.design == "convolution" for m in modules):
            raise InputError("a temporal-convolution motion module has no attention whose keys a scale could scale")
        transformers = [m.temporal_transformer for m in modules]
        previous = [t.attention_scale for t in transformers]
        for transformer in transformers:
            transformer.attention_scale = scale
        try:
            yield
        finally:
            for transformer, value in zip(transformers, previous, strict=True):
                transformer.attention_scale = value

    @contextmanager
    def scaled_motion(self, scale: MotionScale | None) -> Iterator[None]:
        """`motion_scale` set to `scale` inside the block and restored after it; None leaves it as it is."""
        previous = dict(self._motion_scales)
        if scale is not None:
            self.motion_scale = scale
        try:
            yield
        finally:
            self._motion_scales = previous

    def set_clip_norms(self, enabled: bool) -> None:
        """Switch the ResNet GroupNorms (norm1, norm2, conv_norm_out) to statistics over all frames (v1)."""
        for norm in _resnet_norms(self.unet):
            # Swapping the class keeps the very same module, parameters and state-dict keys.
            norm.__class__ = ClipGroupNorm if enabled else nn.GroupNorm
            if enabled:
                norm.frames = self.frames
        self._clip_norms = enabled

    @property
    def clip_norms(self) -> bool:
        return self._clip_norms

    def remove(self) -> UNet2DConditionModel:
        """Detach the motion modules and give back the plain 2-D UNet."""
        self.set_clip_norms(False)
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        for layer, processor in (*self._shared_context, *self._fused_self_attention):
            layer.set_processor(processor)
        self._shared_context = []
        self._fused_self_attention = []
        restore_geglus(self._split_geglus)
        self._split_geglus = []
        return self.unet

    def _context_is_shared(self) -> bool:
        # Re-checked per call: someone may have set other attention processors since inflation.
        return (
            bool(self._shared_context)
            and all(isinstance(layer.processor, SharedContextCrossAttnProcessor) for layer, _ in self._shared_context)
            and len(self._shared_context) == self._num_cross_attentions
        )

    @contextmanager
    def _folded(self, num_frames: int) -> Iterator[None]:
        previous = self.frames.num_frames
        self.frames.num_frames = num_frames
        try:
            yield
        finally:
            self.frames.num_frames = previous

    def fold_frames(self, num_frames: int):  # noqa: ANN201 - a context manager
        """Keep `num_frames` set around forward *and* backward: gradient checkpointing re-runs the hooks
        (and the v1 clip norms) during backward, after `forward` has returned."""
        return self._folded(num_frames)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in backward: the 2-D UNet's own checkpointing plus each motion module.
        Run forward and backward inside `fold_frames(f)`."""
        self.unet.enable_gradient_checkpointing()
        self.gradient_checkpointing = True

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        **unet_kwargs,
    ) -> torch.Tensor:
        """sample (b, c, f, h, w); encoder_hidden_states (b, tokens, dim), or (b, f, tokens, dim) per frame."""
        b, _, f, _, _ = sample.shape
        if self.motion_enabled and f > self.max_frames and self.free_noise is None:
            raise InputError(
                f"{f} frames requested, but the motion module's position encoding holds at most "
                f"{self.max_frames}; generate at most {self.max_frames} frames or use context windows"
            )
        x = rearrange(sample, "b c f h w -> (b f) c h w")
        t = torch.as_tensor(timestep, device=sample.device)
        t = repeat(t.reshape(-1).expand(b), "b -> (b f)", f=f)
        if encoder_hidden_states.ndim == 3:
            # One context per video: the cross-attention processors share it among the video's frames.
            context = (
                encoder_hidden_states
                if self._context_is_shared()
                else repeat(encoder_hidden_states, "b n d -> (b f) n d", f=f)
            )
        else:
            context = rearrange(encoder_hidden_states, "b f n d -> (b f) n d")
        with self._folded(f):
            out = self.unet(x, t, encoder_hidden_states=context, return_dict=False, **unet_kwargs)[0]
        return rearrange(out, "(b f) c h w -> b c f h w", f=f)


def on_hidden_states(output, run: Callable[[torch.Tensor], torch.Tensor]):  # noqa: ANN001, ANN201
    """A hooked layer's output with `run` applied to its hidden states: a ResNet's tensor, or a spatial
    transformer's (a tuple when called with return_dict=False, else an output object with `.sample`)."""
    if isinstance(output, torch.Tensor):
        return run(output)
    if isinstance(output, tuple):
        return (run(output[0]), *output[1:])
    output.sample = run(output.sample)
    return output


def _scaled(run, scale: float, x: torch.Tensor, num_frames: int) -> torch.Tensor:  # noqa: ANN001
    """A motion module's output at `scale`: x + scale·(module(x) − x)."""
    return x + scale * (run(x, num_frames) - x)


def inflate_unet(
    unet: UNet2DConditionModel, motion_modules: MotionModules, clip_norms: bool | None = None
) -> AnimationUNet:
    """Insert `motion_modules` into `unet`; `clip_norms` defaults to True exactly for v1 modules."""
    return AnimationUNet(unet, motion_modules, clip_norms)
