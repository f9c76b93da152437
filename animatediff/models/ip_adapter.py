"""IP-Adapter's decoupled cross-attention in a 2-D UNet, switched in only while it is used.

IP-Adapter (Ye et al. 2023, arXiv 2308.06721) adds to every cross-attention a second attention over image tokens,
out = Attn(q, K_text, V_text) + s·Attn(q, K_ip(img), V_ip(img)), the image tokens being a CLIP image embedding
projected by a small network. diffusers' own loader builds both in a `UNet2DConditionModel`
(`UNet2DConditionLoadersMixin._load_ip_adapter_weights`: `IPAdapterAttnProcessor2_0` on every cross-attention, the
projection as `encoder_hid_proj`, `encoder_hid_dim_type` "ip_image_proj"), and its `set_ip_adapter_scale` sets s.

Several IP-Adapters at once are diffusers' multi-adapter form: one loader call on the list of their weights, each
cross-attention's processor then holding one image key and value per adapter, each with its own scale, and the
projection one per adapter (`MultiIPAdapterImageProjection`), the UNet taking a list of image embeddings.

`IPAdapterLayers` runs that loader once, keeps what it built, and puts the UNet straight back as it was (its own
processors, among them the inflated UNet's shared-context ones, no projection); `installed()` switches the
IP-Adapter's processors (on the cross-attentions only) and projection in for a block and the UNet's own back after
it, so a UNet is only ever changed inside one prediction. While they are in, the inflated UNet's
`_context_is_shared` check sees processors other than its own and hands the text to every frame (per-frame
context, as diffusers' `UNetMotionModel` runs IP-Adapter); the image tokens come per frame too, through
`added_cond_kwargs` (`pipeline/ip_adapter.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import (
    IPAdapterAttnProcessor,
    IPAdapterAttnProcessor2_0,
    IPAdapterXFormersAttnProcessor,
)
from diffusers.models.embeddings import ImageProjection
from torch import nn

from animatediff.errors import InputError

IP_PROCESSORS = (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0, IPAdapterXFormersAttnProcessor)


@dataclass
class _UNetState:
    processors: list[object]
    """Of the layers the IP-Adapter changes (its cross-attentions), in order."""
    projection: nn.Module | None
    hid_dim_type: str | None


def _layers(unet: UNet2DConditionModel) -> list[nn.Module]:
    """Every attention layer of the UNet itself (not those inside an installed image projection)."""
    return [
        m
        for name, m in unet.named_modules()
        if hasattr(m, "set_processor") and not name.startswith("encoder_hid_proj.")
    ]


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _set_projection(unet: UNet2DConditionModel, projection: nn.Module | None) -> None:
    # Dropped from both places first, so None lands where UNet2DConditionModel.__init__ leaves it (a plain attribute).
    unet._modules.pop("encoder_hid_proj", None)
    unet.__dict__.pop("encoder_hid_proj", None)
    unet.encoder_hid_proj = projection


class IPAdapterLayers:
    """One or more IP-Adapters' attention processors and image projections for one 2-D UNet, built by diffusers'
    loader."""

    def __init__(self, unet: UNet2DConditionModel, state_dicts: Sequence[dict[str, dict[str, torch.Tensor]]]) -> None:
        """`state_dicts`: per IP-Adapter, {"image_proj": ..., "ip_adapter": ...} in diffusers' layout
        (`formats/ip_adapter.py`), each checked against `unet` beforehand (`check_ip_adapter`)."""
        if unet.encoder_hid_proj is not None:
            raise InputError(
                f"IP-Adapter: this UNet already projects its encoder states (encoder_hid_dim_type "
                f"{unet.config.encoder_hid_dim_type!r}); SD1.x bases have no such projection"
            )
        self.unet = unet
        layers = _layers(unet)
        own = [m.processor for m in layers]
        dim_type = getattr(unet.config, "encoder_hid_dim_type", None)
        try:
            # diffusers sets every layer's processor: IP-Adapter ones on the cross-attentions, fresh copies elsewhere.
            with _quiet("diffusers.models.modeling_utils"):  # its `.to()` warns about no fp32 modules, needlessly
                unet._load_ip_adapter_weights(list(state_dicts), low_cpu_mem_usage=False)
            self._layers = [m for m in layers if isinstance(m.processor, IP_PROCESSORS)]
            self._ip = self._state()
        finally:
            for layer, processor in zip(layers, own, strict=True):
                layer.set_processor(processor)
            _set_projection(unet, None)
            unet.config.encoder_hid_dim_type = dim_type

    def _state(self) -> _UNetState:
        return _UNetState(
            [m.processor for m in self._layers],
            self.unet.encoder_hid_proj,
            getattr(self.unet.config, "encoder_hid_dim_type", None),
        )

    def _restore(self, state: _UNetState) -> None:
        for layer, processor in zip(self._layers, state.processors, strict=True):
            layer.set_processor(processor)
        _set_projection(self.unet, state.projection)
        self.unet.config.encoder_hid_dim_type = state.hid_dim_type  # an attribute, as diffusers' loader sets it

    @property
    def projections(self) -> list[nn.Module]:
        """The image projection of each IP-Adapter, as diffusers' `MultiIPAdapterImageProjection` holds them."""
        return list(self._ip.projection.image_projection_layers)

    @property
    def takes_hidden_states(self) -> list[bool]:
        """Per IP-Adapter, True where its projection takes the image encoder's penultimate hidden states (Plus,
        Full), False where its projected image embedding (the plain IP-Adapter): diffusers'
        `prepare_ip_adapter_image_embeds` rule."""
        return [not isinstance(projection, ImageProjection) for projection in self.projections]

    @contextmanager
    def installed(self) -> Iterator[None]:
        """The IP-Adapter's processors and projection in the UNet inside the block, the UNet's own after it."""
        own = self._state()
        self._restore(self._ip)
        try:
            yield
        finally:
            self._restore(own)

    def set_scale(self, scale: float | dict | list[float | dict]) -> None:
        """s, the weight of the image attention, one for every IP-Adapter or one per IP-Adapter in a list, each a
        number or per block in diffusers' layer-wise form (`pipeline/ip_scales.py`), on the installed processors
        (diffusers' `set_ip_adapter_scale`); a block given more or fewer scales than it has transformers is a
        one-line InputError."""
        from diffusers.loaders import IPAdapterMixin  # here: importing it imports transformers' image processors

        with self.installed():
            try:
                IPAdapterMixin.set_ip_adapter_scale(SimpleNamespace(unet=self.unet), scale)
            except ValueError as err:  # diffusers' check of the layer-wise form against the UNet's blocks
                raise InputError(f"IP-Adapter scale per block: {err}") from None
