"""The spatial attention processors of an inflated UNet: cross-attention that shares one text context among all
frames of a video, and self-attention with its query, key and value projections fused.

With frames folded into the batch, diffusers' cross-attention would project the same 77 text tokens to keys and
values once per frame. Cross-attention treats every query token independently, so a video's frames can instead be
joined into one long query sequence against a single projection of its text: the same result, with the key/value
projections done once per video rather than once per frame (and no per-frame copies of the text embeddings).

Self-attention projects the same tokens three times; one matmul over the stacked weights computes the same dot
products in one pass over the tokens (diffusers' `fuse_qkv_projections`, without a stored fused copy, so weights
changed in place — a fused LoRA — are always the ones used).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from animatediff.models.fused_linear import plain_linears, plus_residual, stacked_projection


class SharedContextCrossAttnProcessor(AttnProcessor2_0):
    """Like `AttnProcessor2_0`, but accepts a context batch b that divides the query batch b·f."""

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
        shared = (
            encoder_hidden_states is not None
            and hidden_states.ndim == 3
            and encoder_hidden_states.shape[0] != hidden_states.shape[0]
            and attention_mask is None
            and attn.spatial_norm is None
            and attn.group_norm is None
            and attn.norm_q is None
            and attn.norm_k is None
        )
        if not shared:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        bf, n, c = hidden_states.shape
        b = encoder_hidden_states.shape[0]
        if bf % b:
            raise ValueError(f"query batch {bf} is not a multiple of the text batch {b}")
        residual = hidden_states
        context = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
        # ((b f), n, c) -> (b, f·n, c): one long query sequence per video.
        query = attn.to_q(hidden_states.reshape(b, (bf // b) * n, c))
        key, value = attn.to_k(context), attn.to_v(context)
        heads = attn.heads
        query, key, value = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (query, key, value))
        out = F.scaled_dot_product_attention(query, key, value)
        out = out.transpose(1, 2).flatten(2).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out)).reshape(bf, n, -1)
        return _finished(attn, out, residual)


class FusedSelfAttnProcessor(AttnProcessor2_0):
    """Like `AttnProcessor2_0` for plain self-attention, with q, k and v from one matmul over the stacked weights;
    anything else (a mask, norms, wrapped or offloaded projections: `models/fused_linear.py`) takes diffusers' own
    path."""

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
        projections = (attn.to_q, attn.to_k, attn.to_v)
        fusable = (
            encoder_hidden_states is None
            and hidden_states.ndim == 3
            and attention_mask is None
            and attn.spatial_norm is None
            and attn.group_norm is None
            and attn.norm_q is None
            and attn.norm_k is None
            and plain_linears(projections, hidden_states.device, bias=False)
        )
        if not fusable:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        b, n, _ = hidden_states.shape
        qkv = stacked_projection(hidden_states, projections)
        # (b, n, 3·c) → (3, b, heads, n, d), a view: SDPA reads the strides.
        query, key, value = qkv.unflatten(-1, (3, attn.heads, -1)).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(query, key, value)
        out = attn.to_out[1](attn.to_out[0](out.transpose(1, 2).flatten(2)))
        return _finished(attn, out, hidden_states)


def _finished(attn: Attention, out: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The output projection's result with the layer's residual and rescaling, as `AttnProcessor2_0` ends, in the
    projection's own (fresh) buffer where it can hold them, and without a division by 1."""
    if attn.residual_connection:
        out = plus_residual(out, residual)
    return out if attn.rescale_output_factor == 1 else out / attn.rescale_output_factor


def fuse_self_attention(unet: torch.nn.Module) -> list[tuple[Attention, object]]:
    """Install the fused-projection processor on every default self-attention; returns (layer, old processor)."""
    return _replace_default_processors(unet, cross=False, processor=FusedSelfAttnProcessor)


def share_text_context(unet: torch.nn.Module) -> list[tuple[Attention, object]]:
    """Install the shared-context processor on every default cross-attention; returns (layer, old processor)."""
    return _replace_default_processors(unet, cross=True, processor=SharedContextCrossAttnProcessor)


def _replace_default_processors(
    unet: torch.nn.Module, cross: bool, processor: type[AttnProcessor2_0]
) -> list[tuple[Attention, object]]:
    replaced = []
    for module in unet.modules():
        if isinstance(module, Attention) and module.is_cross_attention == cross:
            if type(module.processor) is AttnProcessor2_0:  # diffusers' default; others were chosen by someone
                replaced.append((module, module.processor))
                module.set_processor(processor())
    return replaced
