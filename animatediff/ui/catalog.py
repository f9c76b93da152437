"""The models a web page may pick: a scan of a models folder in the layout the other tools use, and the embedded
world model.

The page names a model by the id the scan gave it (`Stable-diffusion/foo.safetensors`, `world:base`); a path never
comes from the browser. An id the last scan did not list is refused, and so is anything that resolves outside the
models folder (a `..`, an absolute path, a symlink that points out), at the scan and again when it is used.

Layout (each folder optional; names as A1111, ComfyUI and the AnimateDiff extensions spell them):

    DIR/Stable-diffusion/   diffusers SD1.x folders (bases) and single-file checkpoints (personalized models)
    DIR/Lora/               image LoRAs and v3 domain adapters (.safetensors, .ckpt)
    DIR/motion_modules/     motion modules (.safetensors, .ckpt) and diffusers MotionAdapter folders
    DIR/motion_lora/        MotionLoRAs
    DIR/ControlNet/         ControlNets (.pth, .safetensors, diffusers folders)
    DIR/SparseCtrl/         SparseCtrl encoders (official files, diffusers folders)
    DIR/ipadapter/          IP-Adapters (.safetensors, .bin in diffusers' layout); an `image_encoder/` folder here
                            is the default encoder of the files beside it, as in h94/IP-Adapter
    DIR/clip_vision/        CLIP image encoders (CLIPVisionModelWithProjection folders)
    DIR/VAE/                VAEs in place of the base's (single files, diffusers VAE folders)
    DIR/embeddings/         textual-inversion embeddings, every one loaded for every run (as A1111 loads them),
                            each written in a prompt by its file name
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from animatediff.errors import InputError

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
FOLDERS = {
    "checkpoints": "Stable-diffusion",
    "loras": "Lora",
    "motion_modules": "motion_modules",
    "motion_loras": "motion_lora",
    "controlnets": "ControlNet",
    "sparse_ctrls": "SparseCtrl",
    "ip_adapters": "ipadapter",
    "image_encoders": "clip_vision",
    "vaes": "VAE",
    "embeddings": "embeddings",
}
"""Which subfolder holds what."""
KINDS = ("base", "dreambooth", "lora", "adapter", "motion_module", "motion_lora", "controlnet", "sparsectrl",
         "ip_adapter", "image_encoder", "vae", "embedding")  # fmt: skip
"""What the page picks: each a list of choices."""


@dataclass(frozen=True)
class Choice:
    """One model the page can pick."""

    id: str
    """What the page sends back: a path relative to the models folder, or `world:<name>` for the embedded world."""
    label: str
    path: Path


@dataclass
class Catalog:
    """The choices of every kind from the last scan."""

    root: Path | None
    choices: dict[str, list[Choice]] = field(default_factory=lambda: {kind: [] for kind in KINDS})

    def resolve(self, kind: str, choice_id: str) -> Path:
        """The path behind a choice the scan listed; an InputError for anything else."""
        for choice in self.choices.get(kind, []):
            if choice.id == choice_id:
                if self.root is not None and not choice.id.startswith("world:"):
                    inside(choice.path, self.root)  # a symlink swapped since the scan is still refused
                return choice.path
        raise InputError(f"{kind.replace('_', ' ')} {choice_id!r} is not in the models folder (refresh the list?)")

    def as_json(self) -> dict[str, list[dict[str, str]]]:
        return {kind: [{"id": c.id, "label": c.label} for c in items] for kind, items in self.choices.items()}


def inside(path: Path, root: Path) -> Path:
    """`path` resolved; an InputError where it (or a symlink on the way) points out of the models folder `root`."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise InputError(f"{path.name} points outside the models folder")
    return resolved


def _entries(folder: Path, root: Path) -> list[Path]:
    """The folder's entries that stay inside the models folder, sorted by name."""
    if not folder.is_dir():
        return []
    kept = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        try:
            inside(path, root)
        except (InputError, OSError):
            continue
        kept.append(path)
    return kept


def _weights(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES


def scan(root: str | os.PathLike | None, embedded: bool = True) -> Catalog:
    """The choices in a models folder (None: none), the embedded world's first where `embedded`."""
    catalog = Catalog(Path(root).resolve() if root is not None else None)
    if embedded:
        _add_world(catalog)
    if catalog.root is None:
        return catalog
    if not catalog.root.is_dir():
        raise InputError(f"models folder not found: {root}")
    top = catalog.root

    def add(kind: str, path: Path) -> None:
        rel = path.relative_to(top).as_posix()
        catalog.choices[kind].append(Choice(rel, rel.split("/", 1)[-1], path))

    for path in _entries(top / FOLDERS["checkpoints"], top):
        if (path / "model_index.json").is_file():
            add("base", path)
        elif _weights(path):
            add("dreambooth", path)
    for path in _entries(top / FOLDERS["loras"], top):
        if _weights(path):
            add("lora", path)
            add("adapter", path)
    for path in _entries(top / FOLDERS["motion_modules"], top):
        if _weights(path) or (path / "config.json").is_file():
            add("motion_module", path)
    for path in _entries(top / FOLDERS["motion_loras"], top):
        if _weights(path) or (path / "adapter_config.json").is_file():
            add("motion_lora", path)
    for kind, folder in (("controlnet", "controlnets"), ("sparsectrl", "sparse_ctrls")):
        for path in _entries(top / FOLDERS[folder], top):
            if _weights(path) or (path / "config.json").is_file():
                add(kind, path)
    for path in _entries(top / FOLDERS["ip_adapters"], top):
        if _weights(path) and path.suffix.lower() in (".safetensors", ".bin"):
            add("ip_adapter", path)
    for path in _entries(top / FOLDERS["image_encoders"], top):
        if (path / "config.json").is_file():
            add("image_encoder", path)
    for path in _entries(top / FOLDERS["vaes"], top):
        if _weights(path) or (path / "config.json").is_file():
            add("vae", path)
    for path in _entries(top / FOLDERS["embeddings"], top):
        if _weights(path):
            add("embedding", path)
    return catalog


def _add_world(catalog: Catalog) -> None:
    from animatediff.errors import InputNotFound
    from animatediff.world.layout import EMBEDDED, SPARSECTRL_RGB, embedded_models

    try:
        world = embedded_models()
    except InputNotFound:
        return
    add = catalog.choices
    add["base"].append(Choice("world:base", "world (embedded)", world.base))
    if world.motion_module is not None:
        add["motion_module"].append(Choice("world:motion_module", "world (embedded)", world.motion_module))
    if world.dreambooth is not None:
        add["dreambooth"].append(Choice("world:star", "world: star (DreamBooth)", world.dreambooth))
    if world.lora is not None:
        add["lora"].append(Choice("world:outlined", "world: outlined (LoRA)", world.lora))
    for motion, path in world.motion_loras.items():
        add["motion_lora"].append(Choice(f"world:{motion}", f"world: {motion}", path))
    if (EMBEDDED / SPARSECTRL_RGB).is_file():
        add["sparsectrl"].append(Choice("world:rgb", "world: RGB (image to video)", EMBEDDED / SPARSECTRL_RGB))
