"""Reference-only hooks in an inflated UNet: a picture's own features steer the clip, with no model of its own
(A1111 ControlNet's `reference_only` and `reference_adain`, as animatediff-cli-prompt-travel's `controlnet_ref`
runs them on a video).

Every prediction is made twice. First a *write* pass runs the UNet on the reference picture's latents, noised to the
step's timestep, and each hooked layer keeps what it saw. Then the *read* pass runs on the clip, and each hooked
layer uses what the write pass kept in the same row (the same video and frame of the batch):

- attention: a spatial self-attention attends over its own tokens followed by the reference's, instead of its own
  alone. The layers are the spatial transformer blocks' in prompt-travel's order (down, up, then mid blocks,
  sorted stably by width, widest first); block i of N reads when `attention_weight` > i/N.
- AdaIN: where a motion module is attached (after each ResNet and spatial transformer of the down and up blocks,
  after the mid block's transformer), before the module runs, each channel of each frame is normalised over its
  pixels to the reference's mean and variance (eps 1e-6). Down block w of n weighs 2(1 − w/n), up block w 2w/n,
  the mid block 0; a block is hooked when `adain_weight` ≥ its weight.

Both blend what they make, r, with what the layer makes without the reference, p (plain self-attention; the
features as they were): under guidance the unconditional rows take `style_fidelity`·p + (1 − style_fidelity)·r, the
conditional rows r; then each row takes s·that + (1 − s)·p, s = `scale_pattern`[j mod its length] for the row's
frame j within the call (a context window's own position, as prompt-travel counts it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from diffusers.models.attention_processor import Attention
from torch import nn

from animatediff.models.inflate import on_hidden_states

if TYPE_CHECKING:
    from animatediff.models.inflate import AnimationUNet

EPS = 1e-6
"""The floor of a variance before its square root (A1111's and prompt-travel's)."""


def reference_attention_layers(unet: nn.Module) -> list[tuple[Attention, float]]:
    """A 2-D UNet's spatial self-attention layers with their place i/N in prompt-travel's order (module docstring);
    a block attending to text only is counted but not returned."""
    blocks = []
    for block in [*unet.down_blocks, *unet.up_blocks, unet.mid_block]:
        for transformer in getattr(block, "attentions", None) or ():
            blocks.extend(getattr(transformer, "transformer_blocks", ()))
    order = sorted(range(len(blocks)), key=lambda i: -blocks[i].attn1.query_dim)  # stable: ties keep their order
    return [
        (blocks[i].attn1, rank / len(blocks))
        for rank, i in enumerate(order)
        if not getattr(blocks[i], "only_cross_attention", False)
    ]


def reference_adain_layers(unet: nn.Module) -> list[tuple[nn.Module, float]]:
    """The layers whose outputs AdaIN acts on, with their block's weight (module docstring)."""
    layers: list[tuple[nn.Module, float]] = []
    for blocks, weight in (
        (unet.down_blocks, lambda w, n: 2 * (1 - w / n)),
        (unet.up_blocks, lambda w, n: 2 * w / n),
    ):
        for w, block in enumerate(blocks):
            for layer in getattr(block, "attentions", None) or block.resnets:
                layers.append((layer, weight(w, len(blocks))))
    if getattr(unet.mid_block, "attentions", None):
        layers.append((unet.mid_block.attentions[0], 0.0))
    return layers


class ReferenceBank:
    """What the write pass kept, per hooked layer, and how the read pass blends (module docstring)."""

    def __init__(self, style_fidelity: float, scale_pattern: Sequence[float]) -> None:
        self.style_fidelity = float(style_fidelity)
        self.scale_pattern = [float(s) for s in scale_pattern]
        self.mode: str | None = None  # "write", "read", or None: the layers run as they are
        self.guided = False  # in a read: the first half of the batch's videos are unconditional
        self.num_frames = 1  # frames per video in the call's batch: rows are (video, frame)
        self.kept: dict[int, object] = {}
        self.processors: dict[int, ReferenceAttnProcessor] = {}  # per layer, kept between predictions

    def processor_for(self, layer: Attention) -> ReferenceAttnProcessor:
        """The layer's reference processor around its own: the same object at every prediction while its own
        stays, so a compiled block sees one processor, not a new one each step."""
        processor = self.processors.get(id(layer))
        if processor is None or processor.inner is not layer.processor:
            processor = self.processors[id(layer)] = ReferenceAttnProcessor(layer.processor, self)
        return processor

    def keep(self, key: int, value: object) -> None:
        self.kept[key] = value

    def take(self, key: int) -> object:
        """What the write pass kept for this layer; a read without one is a bug in the caller."""
        return self.kept[key]

    def blend(self, referenced: torch.Tensor, plain_of: Callable[[], torch.Tensor]) -> torch.Tensor:
        """r (`referenced`, rows first) blended with p (`plain_of()`, computed only when a blend needs it) by the
        style fidelity and the scale pattern."""
        rows = referenced.shape[0]
        uncond = rows // 2 if self.guided else 0
        fidelity = self.style_fidelity if uncond else 0.0
        weights = torch.tensor(
            [self.scale_pattern[(r % self.num_frames) % len(self.scale_pattern)] for r in range(rows)]
        )
        partial = bool((weights != 1).any())
        if fidelity == 0 and not partial:
            return referenced
        plain = plain_of()
        out = referenced
        if fidelity:
            mixed = fidelity * plain[:uncond] + (1 - fidelity) * referenced[:uncond]
            out = torch.cat([mixed, referenced[uncond:]])
        if partial:
            s = weights.to(out.device, out.dtype).view(rows, *([1] * (out.ndim - 1)))
            out = s * out + (1 - s) * plain
        return out


class ReferenceAttnProcessor:
    """A self-attention processor that keeps its input in a write pass and attends over it too in a read pass;
    `inner` is the layer's own processor, which does the attending."""

    def __init__(self, inner: object, bank: ReferenceBank) -> None:
        self.inner = inner
        self.bank = bank

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
        def plain() -> torch.Tensor:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)

        bank = self.bank
        if bank.mode == "write":
            bank.keep(id(self), hidden_states)
        if bank.mode != "read" or encoder_hidden_states is not None:
            return plain()
        joined = torch.cat([hidden_states, bank.take(id(self)).to(hidden_states.dtype)], dim=1)
        referenced = self.inner(attn, hidden_states, joined, None, temb, *args, **kwargs)
        return bank.blend(referenced, plain)


def _adain_hook(bank: ReferenceBank):  # noqa: ANN202
    def adain(x: torch.Tensor, key: int) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=(-2, -1), keepdim=True, correction=0)
        if bank.mode == "write":
            bank.keep(key, (mean, var))
            return x
        if bank.mode != "read":
            return x
        ref_mean, ref_var = bank.take(key)
        std, ref_std = var.clamp_min(EPS).sqrt(), ref_var.to(x.dtype).clamp_min(EPS).sqrt()
        normalised = (x - mean) / std * ref_std + ref_mean.to(x.dtype)
        return bank.blend(normalised, lambda: x)

    def hook(layer: nn.Module, _args: tuple, output):  # noqa: ANN001, ANN202
        return on_hidden_states(output, lambda x: adain(x, id(layer)))

    return hook


@contextmanager
def reference_hooks(
    unet: AnimationUNet,
    bank: ReferenceBank,
    attention_weight: float | None,
    adain_weight: float | None,
) -> Iterator[None]:
    """Within: the layers `attention_weight` and `adain_weight` pick (None: none of that kind) hooked to `bank`.
    After: the layers as they were, and the bank emptied."""
    saved: list[tuple[Attention, object]] = []
    handles = []
    try:
        if attention_weight is not None:
            for layer, place in reference_attention_layers(unet.unet):
                if attention_weight > place:
                    saved.append((layer, layer.processor))
                    layer.processor = bank.processor_for(layer)
        if adain_weight is not None:
            hook = _adain_hook(bank)
            for layer, weight in reference_adain_layers(unet.unet):
                if adain_weight >= weight:  # before the motion module attached to the same layer
                    handles.append(layer.register_forward_hook(hook, prepend=True))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for layer, processor in saved:
            layer.processor = processor
        bank.kept.clear()
