"""What a pipeline takes from a user's files beside the base and the motion module: LoRAs (image LoRAs, MotionLoRAs,
the v3 domain adapter; merged into the weights, switchable exactly) and textual-inversion embeddings (new words for
the text encoders, `formats.embeddings`). `AnimationPipeline` has these methods."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from animatediff.formats.lora import LoraMerger


class AddedWeights:
    """LoRAs and embeddings on a pipeline with `unet` (inflated), `text_encoder`, `tokenizer` and, for SDXL,
    `text_encoder_2` and `tokenizer_2`."""

    @property
    def loras(self) -> LoraMerger:
        """LoRAs merged into this pipeline's weights, by name: switch, rescale or remove them exactly."""
        from animatediff.formats.lora import LoraMerger

        if getattr(self, "_loras", None) is None:
            parts = {
                "unet": self.unet.unet,
                "text_encoder": self.text_encoder,
                "motion_modules": self.unet.motion_modules,
            }
            if self.text_encoder_2 is not None:  # SDXL: kohya `lora_te2_`, diffusers `text_encoder_2.`
                parts["text_encoder_2"] = self.text_encoder_2
            self._loras = LoraMerger(parts)
        return self._loras

    def add_lora(
        self, path: str | os.PathLike, scale: float = 1.0, kind: str = "image", name: str | None = None
    ) -> str:
        """Merge a LoRA file; kind 'image' (kohya/PEFT), 'motion' (MotionLoRA) or 'adapter' (v3 domain adapter)."""
        from animatediff.formats.motion_lora import load_lora_of_kind

        lora = load_lora_of_kind(kind, path)
        if name is None:  # the same file given twice merges twice, under two names
            name = base = f"{kind}:{path}"
            for n in range(2, len(self.loras.active) + 2):
                if name not in self.loras.active:
                    break
                name = f"{base}#{n}"
        self.loras.add(name, lora, scale)
        return name

    def load_embedding(self, path: str | os.PathLike, word: str | None = None) -> str:
        """Load a textual-inversion embedding (A1111's .pt/.safetensors, diffusers' learned_embeds, SDXL's clip_l +
        clip_g) as a word for the prompts: `word`, or the file's name; returns the word."""
        from animatediff.formats.embeddings import load_embedding

        return load_embedding(self, path, word)
