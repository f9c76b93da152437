"""SparseCtrl (Guo et al., "SparseCtrl: Adding Sparse Controls to Text-to-Video Diffusion Models", 2023): a
ControlNet whose encoder carries motion modules, so that a condition given on a few frames (an image, a scribble)
reaches every frame of the clip.

Layout as released in github.com/guoyww/AnimateDiff (`animatediff/models/sparse_controlnet.py`, the v3
`v3_sd15_sparsectrl_{rgb,scribble}.ckpt` files): the encoder and middle of a ControlNet (a diffusers
`ControlNetModel` here, used as loaded), with a motion module after each (ResNet → spatial transformer) pair of its
down blocks (after each ResNet where a block has no attention), none in the middle, each with one temporal
self-attention per block where the UNet's have two; the condition channels gain a
mask channel (1 on the frames that carry a condition); the condition embedding is ControlNet's small convolution
stack, or (`simplified`) one zero-initialized convolution for conditions that are already latents (the RGB model
takes VAE latents of its images); and the noisy latents it is handed are replaced by zeros, so it sees the
conditions alone. The motion modules are attached with forward hooks, as in `inflate.py`, and normalize each frame
as the official ones do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from einops import rearrange, repeat
from torch import nn

from animatediff.errors import InputError
from animatediff.models.inflate import on_hidden_states
from animatediff.models.motion_module import MotionModule

HINT_CHANNELS = (16, 32, 96, 256)
"""The condition embedding's stages in the official files (ControlNet's own)."""


@dataclass
class SparseCtrlConfig:
    """What a SparseCtrl encoder is, beyond the base UNet's shape it copies (the official `controlnet_additional_
    kwargs` and diffusers' `SparseControlNetModel` config name these)."""

    conditioning_channels: int = 4
    """Channels of a condition without the mask: 4 for latents (the RGB model), 3 for images (scribbles)."""
    simplified_embedding: bool = True
    """One zero convolution embeds the condition (latent conditions), instead of ControlNet's convolution stack."""
    concat_mask: bool = True
    """The condition gains a mask channel: 1 on the frames given a condition, 0 elsewhere."""
    zero_noisy_input: bool = True
    """The noisy latents are replaced by zeros (the released models; `set_noisy_sample_input_to_zero`)."""
    embedding_channels: tuple[int, ...] = HINT_CHANNELS
    """Stages of the non-simplified condition embedding (each after the first halves the image)."""
    motion_heads: int = 8
    """Heads of each motion module's temporal attention."""
    max_frames: int = 32
    """Length of the motion modules' position encoding."""
    motion_norm_groups: int = 32
    """Groups of each motion module's GroupNorm."""
    motion_blocks: int = 1
    """Transformer blocks per motion module."""

    def __post_init__(self) -> None:
        self.embedding_channels = tuple(int(c) for c in self.embedding_channels)
        if self.conditioning_channels < 1:
            raise InputError(f"SparseCtrl conditioning_channels must be at least 1, got {self.conditioning_channels}")

    @property
    def input_channels(self) -> int:
        """Channels the condition embedding takes: the condition's, and the mask's."""
        return self.conditioning_channels + int(self.concat_mask)

    @property
    def takes_latents(self) -> bool:
        """Conditions are VAE latents of images (the RGB model), not images."""
        return self.simplified_embedding

    def to_dict(self) -> dict:
        out = asdict(self)
        out["embedding_channels"] = list(self.embedding_channels)
        return out


class SparseCtrlMotionBlock(nn.Module):
    """The motion modules of one down block (named `motion_modules` as in the official files): one temporal
    self-attention per transformer block (the official `attention_block_types: [Temporal_Self]`)."""

    def __init__(self, channels: int, count: int, config: SparseCtrlConfig) -> None:
        super().__init__()
        self.motion_modules = nn.ModuleList(
            [
                MotionModule(
                    channels,
                    heads=config.motion_heads,
                    num_blocks=config.motion_blocks,
                    max_len=config.max_frames,
                    norm_groups=config.motion_norm_groups,
                    num_attentions=1,
                )
                for _ in range(count)
            ]
        )


class SparseCtrlMotion(nn.Module):
    """The motion modules of a SparseCtrl encoder: `down_blocks.{i}.motion_modules.{j}.…`, the official names."""

    def __init__(self, block_out_channels: tuple[int, ...], layers_per_block: int, config: SparseCtrlConfig) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            [SparseCtrlMotionBlock(c, layers_per_block, config) for c in block_out_channels]
        )


class SparseControlNet(nn.Module):
    """A SparseCtrl encoder: (b, c, f, h, w) latents, text, a sparse condition and its mask → the residuals the
    inflated UNet adds, with frames folded into the batch ((b·f), ...), as a ControlNet's."""

    def __init__(self, controlnet: ControlNetModel, motion: SparseCtrlMotion, config: SparseCtrlConfig) -> None:
        super().__init__()
        if len(motion.down_blocks) != len(controlnet.down_blocks):
            raise InputError(
                f"SparseCtrl: {len(motion.down_blocks)} blocks of motion modules for a ControlNet of "
                f"{len(controlnet.down_blocks)} down blocks"
            )
        self.controlnet = controlnet
        self.motion = motion
        self.sparse_config = config
        self._num_frames: int | None = None
        for block, mblock in zip(controlnet.down_blocks, motion.down_blocks):
            layers = getattr(block, "attentions", None) or block.resnets
            if len(layers) != len(mblock.motion_modules):
                raise InputError("SparseCtrl: its motion modules do not fit the ControlNet's down blocks")
            for layer, module in zip(layers, mblock.motion_modules):
                layer.register_forward_hook(self._hook(module))

    @classmethod
    def from_unet(
        cls, unet: UNet2DConditionModel, config: SparseCtrlConfig, load_weights_from_unet: bool = True
    ) -> SparseControlNet:
        """A SparseCtrl encoder shaped after `unet` (an SD1.x 2-D UNet); with `load_weights_from_unet`, its
        encoder and middle copied from it (the start of training), else left as built (weights loaded next)."""
        stages = config.embedding_channels
        controlnet = ControlNetModel.from_unet(
            unet,
            conditioning_embedding_out_channels=stages,
            load_weights_from_unet=load_weights_from_unet,
            conditioning_channels=config.input_channels,
        )
        return cls.from_controlnet(controlnet, config)

    @classmethod
    def from_controlnet(cls, controlnet: ControlNetModel, config: SparseCtrlConfig) -> SparseControlNet:
        """A SparseCtrl encoder around `controlnet` (built with `config.input_channels` condition channels): the
        simplified condition embedding put in where `config` asks for it, and fresh motion modules (their output
        projections zero, so they start as the identity), on the ControlNet's device."""
        device = next(controlnet.parameters()).device
        if config.simplified_embedding:
            first = controlnet.config.block_out_channels[0]
            embedding = nn.Conv2d(config.input_channels, first, kernel_size=3, padding=1, device=device)
            if device.type != "meta":
                nn.init.zeros_(embedding.weight)
                nn.init.zeros_(embedding.bias)
            controlnet.controlnet_cond_embedding = embedding
        layers = controlnet.config.layers_per_block
        layers = layers[0] if isinstance(layers, (list, tuple)) else layers
        with torch.device(device):
            motion = SparseCtrlMotion(tuple(controlnet.config.block_out_channels), int(layers), config)
        return cls(controlnet, motion, config)

    @property
    def config(self):  # noqa: ANN201 - the ControlNet's FrozenDict config, as diffusers code reads it
        return self.controlnet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.controlnet.dtype

    @property
    def max_frames(self) -> int:
        return self.sparse_config.max_frames

    def _hook(self, module: nn.Module):  # noqa: ANN202
        def hook(_layer: nn.Module, _args: tuple, output):  # noqa: ANN001, ANN202
            f = self._num_frames
            return output if f is None else on_hidden_states(output, lambda x: module(x, f))

        return hook

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        condition: torch.Tensor,
        mask: torch.Tensor,
        conditioning_scale: float = 1.0,
        guess_mode: bool = False,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """sample (b, c, f, h, w); encoder_hidden_states (b, tokens, dim) or per frame (b, f, tokens, dim);
        condition (b, conditioning_channels, f, H, W), zero on frames without one; mask (b, 1, f, H, W), 1 where a
        frame has one. Returns the ControlNet's (down residuals, mid residual), frames folded into the batch."""
        b, _, f = sample.shape[:3]
        if f > self.max_frames:
            raise InputError(
                f"{f} frames for a SparseCtrl encoder whose position encoding holds at most {self.max_frames}; "
                "use context windows"
            )
        if condition.shape[0] != b or condition.shape[2] != f or mask.shape[:3] != (b, 1, f):
            raise InputError(
                f"SparseCtrl: a condition of shape {tuple(condition.shape)} and mask {tuple(mask.shape)} for latents "
                f"of shape {tuple(sample.shape)}"
            )
        if self.sparse_config.zero_noisy_input:
            sample = torch.zeros_like(sample)
        if self.sparse_config.concat_mask:
            condition = torch.cat([condition, mask], dim=1)
        x = rearrange(sample, "b c f h w -> (b f) c h w")
        t = torch.as_tensor(timestep, device=sample.device)
        t = repeat(t.reshape(-1).expand(b), "b -> (b f)", f=f)
        if encoder_hidden_states.ndim == 3:
            context = repeat(encoder_hidden_states, "b n d -> (b f) n d", f=f)
        else:
            context = rearrange(encoder_hidden_states, "b f n d -> (b f) n d")
        self._num_frames = f
        try:
            down, mid = self.controlnet(
                x,
                t,
                encoder_hidden_states=context,
                controlnet_cond=rearrange(condition, "b c f h w -> (b f) c h w"),
                conditioning_scale=conditioning_scale,
                guess_mode=guess_mode,
                return_dict=False,
            )
        finally:
            self._num_frames = None
        return list(down), mid


__all__ = ["SparseControlNet", "SparseCtrlConfig", "SparseCtrlMotion"]
