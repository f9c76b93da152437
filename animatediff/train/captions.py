"""The frozen text side of training: captions → the UNet's text context and, over an SDXL base, its added
conditioning (the pooled captions and the clips' size ids, as `pipeline.sdxl` gives them when sampling)."""

from __future__ import annotations

import torch
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from animatediff.pipeline.sdxl import SDXLConditioning, time_ids
from animatediff.text_encoding import encode_prompts, encode_prompts_pooled


class CaptionEncoder:
    """One CLIP text encoder (SD1.x) or two (SDXL), frozen."""

    def __init__(
        self,
        tokenizer: CLIPTokenizer,
        text_encoder: CLIPTextModel,
        tokenizer_2: CLIPTokenizer | None = None,
        text_encoder_2: CLIPTextModelWithProjection | None = None,
    ) -> None:
        self.tokenizers = (tokenizer,) if text_encoder_2 is None else (tokenizer, tokenizer_2)
        self.encoders = (text_encoder,) if text_encoder_2 is None else (text_encoder, text_encoder_2)

    @property
    def sdxl(self) -> bool:
        return len(self.encoders) == 2

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(context (b, 77, D), pooled captions (b, P) for SDXL, else None)."""
        if not self.sdxl:
            return encode_prompts(self.tokenizers[0], self.encoders[0], texts), None
        return encode_prompts_pooled(self.tokenizers, self.encoders, texts)


def added_conditioning(pooled: torch.Tensor | None, noisy: torch.Tensor, vae_scale_factor: int) -> dict:
    """The UNet's keyword arguments for SDXL's added conditioning of these noisy clips (b, c, f, h, w): the pooled
    captions and the size ids of the clips' own pixel size, uncropped; {} without pooled captions (SD1.x)."""
    if pooled is None:
        return {}
    height, width = (side * vae_scale_factor for side in noisy.shape[-2:])
    condition = SDXLConditioning(pooled, None, time_ids(height, width))
    return condition.unet_kwargs(noisy, None, None, torch.arange(noisy.shape[2]))
