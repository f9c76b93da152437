"""What models a web form's job loads: the model cache's `PipelineSpec` of its base, checkpoint, VAE, LoRAs (the
prompt's `<lora:NAME:WEIGHT>` tags among them, found in the models folder), motion module and embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from animatediff.errors import InputError
from animatediff.model_cache import PipelineSpec
from animatediff.ui.catalog import FOLDERS, Catalog, inside

if TYPE_CHECKING:
    from animatediff.ui.settings import Settings


def spec(s: Settings, catalog: Catalog) -> PipelineSpec:
    """The models to load; an id the catalog does not list is an InputError."""
    loras = [("image", str(catalog.resolve("lora", i)), scale) for i, scale in s.loras]
    if s.adapter:
        loras.append(("adapter", str(catalog.resolve("adapter", s.adapter)), s.adapter_scale))
    loras += [("motion", str(catalog.resolve("motion_lora", i)), scale) for i, scale in s.motion_loras]
    loras += tagged_loras_of(s, catalog)
    return PipelineSpec(
        base=str(catalog.resolve("base", s.base)),
        motion_module=str(catalog.resolve("motion_module", s.motion_module)),
        dreambooth=str(catalog.resolve("dreambooth", s.dreambooth)) if s.dreambooth else None,
        loras=tuple(loras),
        vae=str(catalog.resolve("vae", s.vae)) if s.vae else None,
        embeddings=fitting_embeddings(catalog, catalog.resolve("base", s.base)),
    )


TAG_FOLDERS = ("loras", "motion_loras")
"""The models folder's folders (Lora/ and motion_lora/) a prompt's `<lora:NAME:WEIGHT>` tag finds NAME in."""


def tagged_loras_of(s: Settings, catalog: Catalog) -> list[tuple[str, str, float]]:
    """("auto", path, weight) of the LoRAs the prompt's A1111 tags name (`prompt_loras`), found in the models folder's
    Lora/ and motion_lora/ as the job's run entry finds them (its `lora_dir`: each folder itself first, then below),
    none pointing out of the models folder."""
    from animatediff.prompt_loras import lora_tags, tagged_loras

    texts = [s.prompt, *s.prompt_map.values()]
    if not lora_tags(texts):
        return []
    if catalog.root is None:
        raise InputError("<lora:…> tags name LoRA files in a models folder; the app runs without one")
    found = tagged_loras(texts, [catalog.root / FOLDERS[folder] for folder in TAG_FOLDERS])
    for _, path, _ in found:
        inside(Path(path), catalog.root)
    return found


def fitting_embeddings(catalog: Catalog, base: Path) -> tuple[str, ...]:
    """The embeddings folder's files that fit the base's family (SD1.x: one set of vectors; SDXL: clip_l and clip_g),
    all loaded for a run as A1111 loads its folder; the others, and unreadable files, are left out."""
    from animatediff.base_model import base_family
    from animatediff.formats.embeddings import embedding_family

    paths = [catalog.resolve("embedding", c.id) for c in catalog.choices["embedding"]]
    family = base_family(base) if paths else None
    return tuple(str(p) for p in paths if embedding_family(p) == family)
