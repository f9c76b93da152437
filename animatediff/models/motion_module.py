"""The AnimateDiff motion module: a temporal transformer inserted after each spatial layer.

Guo et al., "AnimateDiff: Animate Your Personalized Text-to-Image Diffusion Models without Specific
Tuning", ICLR 2024 (arXiv 2307.04725), Sec. 4.2; layout as released in github.com/guoyww/AnimateDiff
(`animatediff/models/motion_module.py`). Parameter names follow the official files, so a module's
`state_dict()` *is* the official key layout (minus the recomputable `pos_encoder.pe` buffer).

`MotionModule(design="convolution")` puts the module-design ablation's temporal convolution
(`models/temporal_conv.py`, Sec. 5.3) in the transformer's place, under `temporal_convolution.*`.

With `set_attention_windows`, the blocks attend within sliding windows of frames and fuse them (FreeNoise,
`models/free_noise.py`); off by default.

Shapes: b = videos, f = frames, c = channels, h/w = spatial size of the feature map.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from animatediff.errors import InputError
from animatediff.models.attention_scale import AttentionScale, key_scales, scaled_keys_attention
from animatediff.models.free_noise import AttentionWindows, fused_windows
from animatediff.models.fused_linear import gated_gelu, plain_linears, plus_residual, stacked_projection
from animatediff.models.temporal_conv import TemporalConvolution, input_norm

DESIGNS = ("transformer", "convolution")
"""What a motion module is made of: the paper's temporal transformer, or the ablation's temporal convolution."""


def sinusoidal_position_encoding(length: int, dim: int) -> torch.Tensor:
    """The Transformer sinusoid (Vaswani et al. 2017): (1, length, dim), sin on even, cos on odd channels."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(position * div)
    pe[0, :, 1::2] = torch.cos(position * div)
    return pe


class PositionalEncoding(nn.Module):
    """Adds a frame-index encoding to a (batch, frames, channels) sequence."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        # Not persistent: released files carry the plain sinusoid, which we recompute; a file whose `pe`
        # differs (a stretched or trained encoding) is copied in by the checkpoint loader.
        self.register_buffer("pe", sinusoidal_position_encoding(max_len, dim), persistent=False)

    @property
    def max_len(self) -> int:
        return self.pe.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[1]
        if frames > self.max_len:
            raise InputError(
                f"{frames} frames requested, but this motion module's position encoding holds at most "
                f"{self.max_len}. Generate at most {self.max_len} frames, or use context windows for longer clips."
            )
        return x + self.pe[:, :frames].to(x.dtype)


class TemporalSelfAttention(nn.Module):
    """Multi-head self-attention along the frame axis, position encoding added to its (normed) input."""

    def __init__(self, dim: int, heads: int, max_len: int) -> None:
        super().__init__()
        if dim % heads:
            raise InputError(f"channels {dim} are not divisible by {heads} attention heads")
        self.heads = heads
        self.pos_encoder = PositionalEncoding(dim, max_len)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])
        self.identity = False
        """Perturbed-attention guidance's switch (`pipeline/pag.py`): the attention map the identity, so that the
        output is each frame's own value, projected."""

    def forward(self, x: torch.Tensor, key_scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        # x: (b·h·w, f, c) — every spatial position is an independent sequence over frames. `key_scale`: the keys'
        # multiplier (`models/attention_scale.py`): one number, or (n, f), one per sequence and frame; 1: as trained.
        x = self.pos_encoder(x)
        if self.identity:  # perturbed-attention guidance: each frame attends to itself alone
            return self.to_out[0](self.to_v(x))
        q, k, v = self._project(x).unbind(0)
        out = scaled_keys_attention(q, k, v, key_scale)  # at 1, the paper's softmax(QKᵀ/√d)V
        return self.to_out[0](rearrange(out, "n heads f d -> n f (heads d)"))

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """(n, f, c) → q, k, v stacked as (3, n, heads, f, d). Plain projections run as one matmul over their
        stacked weights (fused QKV: the same dot products, one pass over x); wrapped ones (a training LoRA) each on
        their own, as are offloaded ones (`models/fused_linear.py`)."""
        projections = (self.to_q, self.to_k, self.to_v)
        if plain_linears(projections, x.device, bias=False):
            qkv = stacked_projection(x, projections)
        else:
            qkv = torch.cat([proj(x) for proj in projections], dim=-1)
        return rearrange(qkv, "n f (three heads d) -> three n heads f d", three=3, heads=self.heads)


class GEGLU(nn.Module):
    """Gated GELU (Shazeer 2020): one projection to 2·inner, value · gelu(gate)."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not plain_linears((self.proj,), x.device, bias=True):
            value, gate = self.proj(x).chunk(2, dim=-1)
            return value * F.gelu(gate)
        return gated_gelu(x, self.proj)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        # Indices 0 and 2 match the official names `ff.net.0.proj` and `ff.net.2`.
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TemporalTransformerBlock(nn.Module):
    """Pre-norm residual block: two temporal self-attentions (one in SparseCtrl's encoder), then a GEGLU
    feed-forward."""

    def __init__(self, dim: int, heads: int, max_len: int, num_attentions: int = 2) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            [TemporalSelfAttention(dim, heads, max_len) for _ in range(num_attentions)]
        )
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(num_attentions)])
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)
        self.windows: AttentionWindows | None = None
        """FreeNoise: attend within these sliding windows of frames and fuse them (`models/free_noise.py`);
        None (the default): all frames at once."""
        self.ff_chunk: int | None = None
        """Feed-forward chunking: the FFN runs on this many of the (b·h·w) frame sequences at a time, so its 8×-wide
        GEGLU activations exist for one chunk only; every sequence is computed alone either way, so the result is
        the same. None (the default): all at once."""

    def attend(self, x: torch.Tensor, key_scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        """The attention sub-layers, each with its residual and its keys multiplied by `key_scale`: (n, f, c) →
        (n, f, c)."""
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = plus_residual(attention(norm(x), key_scale), x)
        return x

    def forward(self, x: torch.Tensor, key_scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        if self.windows is None:
            x = self.attend(x, key_scale)
        elif isinstance(key_scale, torch.Tensor):  # a map: each window's keys take its own frames' multipliers
            x = fused_windows(x, self.attend, self.windows, key_scale)
        else:
            x = fused_windows(x, partial(self.attend, key_scale=key_scale), self.windows)
        if self.ff_chunk is None or self.ff_chunk >= x.shape[0]:
            return plus_residual(self.ff(self.ff_norm(x)), x)
        out = torch.empty_like(x)
        for start in range(0, x.shape[0], self.ff_chunk):
            part = x[start : start + self.ff_chunk]
            out[start : start + self.ff_chunk] = self.ff(self.ff_norm(part)) + part
        return out


class TemporalTransformer(nn.Module):
    """GroupNorm per frame (or over the clip) → proj_in → blocks along frames → proj_out (zero-initialized) → +
    input. `norm_over_frames`: the input norm's statistics span all frames of a clip, as the official SDXL module's
    do (its SD1.x modules normalize each frame)."""

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        num_blocks: int = 1,
        max_len: int = 32,
        norm_groups: int = 32,
        num_attentions: int = 2,
        norm_over_frames: bool = False,
    ) -> None:
        super().__init__()
        self.norm_over_frames = norm_over_frames
        if dim % norm_groups:
            raise InputError(f"channels {dim} are not divisible by {norm_groups} norm groups")
        self.norm = nn.GroupNorm(norm_groups, dim, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(dim, dim)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(dim, heads, max_len, num_attentions) for _ in range(num_blocks)]
        )
        self.proj_out = nn.Linear(dim, dim)
        self.attention_scale: AttentionScale = 1.0
        """The temporal attention's key multiplier (`models/attention_scale.py`): a number, or a map (f, h, w) over
        this call's frames; 1 (the default): as trained."""
        # Zero output projection: a fresh module adds nothing, so the inflated UNet starts as the image model.
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        # x: ((b f), c, h, w). The norm runs before frames are unfolded, so its statistics are per frame.
        _, _, height, width = x.shape
        # A channels-last x (a ResNet's output over channels-last latents) sends torch's CPU GroupNorm backward
        # down its channels-last kernel with the permuted gradient of the rearrange below, which crashes it.
        h = self._norm(x.contiguous(), num_frames)
        h = rearrange(h, "(b f) c h w -> (b h w) f c", f=num_frames)
        h = self.proj_in(h)
        b = x.shape[0] // num_frames
        key_scale = key_scales(self.attention_scale, b, height, width)
        for block in self.transformer_blocks:
            h = block(h, key_scale)
        h = self.proj_out(h)
        # The residual add reads h through a permuted view, so unfolding the frames costs no copy of its own.
        h = h.view(b, height, width, num_frames, -1).permute(0, 3, 4, 1, 2)
        return (x.unflatten(0, (b, num_frames)) + h).flatten(0, 1)

    def _norm(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        return input_norm(self.norm, x, num_frames, self.norm_over_frames)


class MotionModule(nn.Module):
    """One insertion point; the wrapper exists so parameter names read `temporal_transformer.*` (or, for
    `design="convolution"`, `temporal_convolution.*`). `num_attentions`: temporal self-attentions per block (2 in the
    UNet's modules, 1 in SparseCtrl's encoder); `norm_over_frames`: the input norm over the whole clip (SDXL's
    modules). The convolution takes `num_blocks`, `norm_groups` and `norm_over_frames`; it has no heads and no
    position encoding, and `max_len` is only the clip length it is made for (`max_frames`)."""

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        num_blocks: int = 1,
        max_len: int = 32,
        norm_groups: int = 32,
        num_attentions: int = 2,
        norm_over_frames: bool = False,
        design: str = "transformer",
    ) -> None:
        super().__init__()
        self.design = design
        if design == "transformer":
            self.temporal_transformer = TemporalTransformer(
                dim, heads, num_blocks, max_len, norm_groups, num_attentions, norm_over_frames
            )
        elif design == "convolution":
            self.temporal_convolution = TemporalConvolution(dim, num_blocks, norm_groups, norm_over_frames)
            self.convolution_max_len = max_len
        else:
            raise InputError(f"unknown motion module design {design!r}; expected one of {', '.join(DESIGNS)}")

    @property
    def max_frames(self) -> int:
        if self.design == "convolution":
            return self.convolution_max_len
        return self.temporal_transformer.transformer_blocks[0].attention_blocks[0].pos_encoder.max_len

    def set_attention_windows(self, windows: AttentionWindows | None) -> None:
        """FreeNoise's window-fused temporal attention (`models/free_noise.py`) in every block; None: off. A
        convolution has no attention to window: it refuses windows."""
        if self.design == "convolution":
            if windows is not None:
                raise InputError(
                    "FreeNoise windows the motion modules' temporal attention; a temporal-convolution motion module "
                    "has none (its kernels see only neighbouring frames already)"
                )
            return
        for block in self.temporal_transformer.transformer_blocks:
            block.windows = windows

    def set_ff_chunk(self, chunk: int | None) -> None:
        """Feed-forward chunking in every block (`TemporalTransformerBlock.ff_chunk`), or the convolution run on
        that many frame sequences at a time (`TemporalConvolution.chunk`); None: off."""
        if chunk is not None and chunk < 1:
            raise InputError(f"ff_chunk must be at least 1 sequence, got {chunk}")
        if self.design == "convolution":
            self.temporal_convolution.chunk = chunk
            return
        for block in self.temporal_transformer.transformer_blocks:
            block.ff_chunk = chunk

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        if self.design == "convolution":
            return self.temporal_convolution(x, num_frames)
        return self.temporal_transformer(x, num_frames)
