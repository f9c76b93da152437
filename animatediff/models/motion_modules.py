"""The full set of motion modules for one UNet, arranged as in the official checkpoints.

Key layout of `state_dict()`: `down_blocks.{i}.motion_modules.{j}.temporal_transformer.*`,
`up_blocks.{i}.motion_modules.{j}.…` and (v2) `mid_block.motion_modules.0.…` — the official layout; the
convolution design (`MotionModuleConfig.design`) has `temporal_convolution.*` in its place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from torch import nn

from animatediff.errors import InputError
from animatediff.models.motion_module import DESIGNS, MotionModule


@dataclass
class MotionModuleConfig:
    """Shape of a motion-module set; everything needed to rebuild it before loading weights."""

    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    """Channels of each UNet resolution level (down order); a module at level i has this many channels."""
    layers_per_block: int = 2
    """Modules per down block; up blocks get one more, as the UNet's up blocks have one more ResNet."""
    use_mid_block: bool = False
    """A module in the mid block, between its attention and second ResNet (v2 files)."""
    num_attention_heads: int = 8
    num_transformer_blocks: int = 1
    max_frames: int = 32
    """Length of the sinusoidal position encoding: 24 in v1 files, 32 in v2/v3."""
    norm_num_groups: int = 32
    version: str = "v3"
    """'v1', 'v2' or 'v3'. v1 also switches the UNet's ResNet norms to statistics over the whole clip."""
    norm_over_frames: bool | None = None
    """The modules' input GroupNorm over all frames of a clip rather than per frame. None: as the official modules
    of the family do: over the clip for SDXL's (the beta module), per frame for SD1.x's and for v1-style SDXL
    modules (HotShot-XL)."""
    design: str = "transformer"
    """'transformer' (the paper's temporal transformer) or 'convolution' (kernel-3 temporal convolutions of about the
    same parameter count, the module-design ablation of Sec. 5.3: `models/temporal_conv.py`). The convolution has no
    heads and no position encoding; `max_frames` still bounds the clips it runs on."""

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        if self.norm_over_frames is None:
            self.norm_over_frames = self.family == "sdxl" and self.version != "v1"
        if self.version not in ("v1", "v2", "v3"):
            raise InputError(f"unknown motion module version {self.version!r}; expected v1, v2 or v3")
        if self.design not in DESIGNS:
            raise InputError(f"unknown motion module design {self.design!r}; expected one of {', '.join(DESIGNS)}")
        heads = self.num_attention_heads if self.design == "transformer" else 1  # a convolution has no heads
        for channels in self.block_out_channels:
            if channels % heads or channels % self.norm_num_groups:
                raise InputError(
                    f"block channels {channels} must be divisible by "
                    + (f"{heads} heads and " if self.design == "transformer" else "")
                    + f"{self.norm_num_groups} norm groups"
                )

    @property
    def family(self) -> str:
        """The base family the modules are shaped for, from `block_out_channels` alone: 'sdxl' for SDXL's three UNet
        levels ((320, 640, 1280) at full size; tiny test models keep the count), 'sd1' otherwise (SD1.x: four)."""
        return "sdxl" if len(self.block_out_channels) == 3 else "sd1"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MotionModuleConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown motion module config keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)


class MotionBlock(nn.Module):
    """The motion modules of one UNet block (named `motion_modules` as in the official files)."""

    def __init__(self, channels: int, count: int, config: MotionModuleConfig) -> None:
        super().__init__()
        self.motion_modules = nn.ModuleList(
            [
                MotionModule(
                    channels,
                    heads=config.num_attention_heads,
                    num_blocks=config.num_transformer_blocks,
                    max_len=config.max_frames,
                    norm_groups=config.norm_num_groups,
                    norm_over_frames=config.norm_over_frames,
                    design=config.design,
                )
                for _ in range(count)
            ]
        )


class MotionModules(nn.Module):
    """All motion modules of a UNet: 2 per down block, 3 per up block (SD1.5), optionally 1 in the middle."""

    def __init__(self, config: MotionModuleConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MotionModuleConfig()
        channels = config.block_out_channels
        self.down_blocks = nn.ModuleList([MotionBlock(c, config.layers_per_block, config) for c in channels])
        self.up_blocks = nn.ModuleList(
            [MotionBlock(c, config.layers_per_block + 1, config) for c in reversed(channels)]
        )
        self.mid_block = MotionBlock(channels[-1], 1, config) if config.use_mid_block else None

    @property
    def max_frames(self) -> int:
        return self.config.max_frames

    def named_motion_modules(self) -> list[tuple[str, MotionModule]]:
        return [(name, m) for name, m in self.named_modules() if isinstance(m, MotionModule)]


__all__ = ["MotionModuleConfig", "MotionModules", "MotionBlock"]
