"""Reuse loaded models across runs: switching only a LoRA or a motion module must not reload the base from disk.

The cache holds one pipeline. A request that keeps the base model (base folder + personalized checkpoint + VAE) keeps
its UNet, VAE and text encoder in memory (another VAE reloads the base); a new motion module is swapped in place
(motion modules are cached by path); LoRAs are switched with exact unmerge + merge (`LoraMerger`). ControlNets and
SparseCtrl encoders are kept for the base they were loaded for (`control_model`). `loads` counts what was read from
disk.
"""

from __future__ import annotations

import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch

from animatediff.base_model import load_base
from animatediff.errors import InputError
from animatediff.formats.lora import Lora
from animatediff.formats.motion_lora import LORA_KINDS, load_lora_of_kind
from animatediff.formats.motion_module_files import load_motion_modules
from animatediff.models import MotionModules, inflate_unet
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.memory import MemoryOptions


@dataclass(frozen=True)
class PipelineSpec:
    """Everything that decides a pipeline's weights."""

    base: str
    """Diffusers SD1.x or SDXL folder or hub id."""
    motion_module: str
    """Motion-module file, diffusers MotionAdapter folder or hub reference."""
    dreambooth: str | None = None
    """Single-file checkpoint of the base's family replacing its UNet, VAE and text encoder(s)."""
    vae: str | None = None
    """A VAE replacing the base's (and the checkpoint's): file, folder or hub id (`formats.vae_file.load_vae`).
    Part of the base: another VAE reloads the base."""
    loras: tuple[tuple[str, str, float], ...] = ()
    """(kind, path, scale) with kind 'image', 'adapter' or 'motion', merged in this order."""
    embeddings: tuple[str, ...] = ()
    """Textual-inversion embedding files (`formats.embeddings`). Once loaded, an embedding's word stays in the text
    encoder until the base reloads (as A1111 keeps its embeddings folder loaded); a prompt only uses it by writing
    it."""


class ModelCache:
    """Hands out a pipeline for a `PipelineSpec`, reloading only the parts that changed since the last one."""

    def __init__(
        self,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        max_motion_modules: int = 2,
        max_control_models: int = 2,
        memory: MemoryOptions | None = None,
    ) -> None:
        self.device = device
        self.dtype = dtype
        self.memory = memory
        """Memory and speed options (`pipeline/memory.py`) every pipeline handed out runs with; None: the defaults.
        Under offload the models are loaded into CPU memory and `device` is where they run."""
        self._load_device = memory.load_device(device) if memory is not None else device
        self.max_motion_modules = max_motion_modules
        """Motion-module sets kept in memory (1.7 GB each at fp32 for SD1.5), least recently used dropped first."""
        self.max_control_models = max_control_models
        """ControlNets and SparseCtrl encoders kept in memory, least recently used dropped first."""
        self.loads: Counter[str] = Counter()
        """How many times each kind of file was read: 'base', 'dreambooth', 'vae', 'motion_module', 'lora',
        'control', 'embedding'."""
        self._pipe: AnimationPipeline | None = None
        self._base_key: tuple[str, str | None, str | None] | None = None
        self._motion_path: str | None = None
        self._motion: OrderedDict[str, MotionModules] = OrderedDict()
        self._loras: dict[tuple[str, str], Lora] = {}
        self._controls: OrderedDict[Hashable, torch.nn.Module] = OrderedDict()
        self._embeddings: set[str] = set()

    def _motion_modules(self, path: str) -> MotionModules:
        if path not in self._motion:
            while len(self._motion) >= max(self.max_motion_modules, 1):
                self._motion.popitem(last=False)
            self._motion[path] = load_motion_modules(path).to(device=self._load_device, dtype=self.dtype).eval()
            self.loads["motion_module"] += 1
        self._motion.move_to_end(path)
        return self._motion[path]

    def control_model(self, key: Hashable, load: Callable[[], torch.nn.Module]) -> torch.nn.Module:
        """The ControlNet or SparseCtrl encoder `key` names (its file and the settings it was built with) for the
        current base: `load()` the first time, the kept model after. A new base drops them all (each was checked and
        shaped against the base it was loaded for)."""
        if key not in self._controls:
            while len(self._controls) >= max(self.max_control_models, 1):
                self._controls.popitem(last=False)
            self._controls[key] = load()
            self.loads["control"] += 1
        self._controls.move_to_end(key)
        return self._controls[key]

    def _lora(self, kind: str, path: str) -> Lora:
        if (kind, path) not in self._loras:
            self._loras[kind, path] = load_lora_of_kind(kind, path)
            self.loads["lora"] += 1
        return self._loras[kind, path]

    def pipeline(self, spec: PipelineSpec) -> AnimationPipeline:
        for kind, _, _ in spec.loras:
            if kind not in LORA_KINDS:
                raise InputError(f"unknown LoRA kind {kind!r}; expected one of {', '.join(LORA_KINDS)}")
        base_key = tuple(os.fspath(p) if p else None for p in (spec.base, spec.dreambooth, spec.vae))
        if self._pipe is not None and self.memory is not None:
            self._pipe.disable_cpu_offload()  # weights back in place for LoRA merges and motion-module swaps
        if self._pipe is None or base_key != self._base_key:
            self._load_base(spec, base_key)
        elif spec.motion_module != self._motion_path:
            self._swap_motion(spec.motion_module)
        self._switch_loras(spec.loras)
        for path in spec.embeddings:
            if path not in self._embeddings:
                self._pipe.load_embedding(path)
                self._embeddings.add(path)
                self.loads["embedding"] += 1
        if self.memory is not None:  # again after every change: a swapped motion module is a new inflated UNet
            self._pipe.apply_memory_options(self.memory, self.device)
        return self._pipe

    def _load_base(self, spec: PipelineSpec, key: tuple[str, str | None, str | None]) -> None:
        if self._pipe is not None:
            # Cached motion modules outlive this pipeline: unmerge its MotionLoRAs from them first.
            self._pipe.loras.clear("motion_modules")
            self._pipe = None  # drop the old model before loading the next one
            self._controls.clear()
        self._embeddings.clear()
        parts = load_base(spec.base, self.dtype, spec.dreambooth, vae=spec.vae)
        self.loads["base"] += 1
        if spec.dreambooth:
            self.loads["dreambooth"] += 1
        if spec.vae:
            self.loads["vae"] += 1
        # The same factory as `AnimationPipeline.from_pretrained`: the base's noise settings and default guidance.
        modules = self._motion_modules(spec.motion_module)
        self._pipe = AnimationPipeline.from_base(parts, modules, device=self._load_device)
        self._base_key, self._motion_path = key, spec.motion_module

    def _swap_motion(self, path: str) -> None:
        pipe = self._pipe
        pipe.loras.clear("motion_modules")  # MotionLoRAs belong to the old modules: unmerge before leaving them
        modules = self._motion_modules(path)
        pipe.unet = inflate_unet(pipe.unet.remove(), modules).eval().requires_grad_(False)
        pipe.loras.components["motion_modules"] = modules
        self._motion_path = path

    def _switch_loras(self, wanted: tuple[tuple[str, str, float], ...]) -> None:
        merger = self._pipe.loras
        names: dict[str, tuple[str, str, float]] = {}
        for kind, path, scale in wanted:  # the same file given twice merges twice, named as `add_lora` names it
            name = base = f"{kind}:{path}"
            for n in range(2, len(names) + 2):
                if name not in names:
                    break
                name = f"{base}#{n}"
            names[name] = (kind, path, scale)
        for name in [n for n in merger.active if n not in names]:
            merger.remove(name)
        for name, (kind, path, scale) in names.items():
            if name not in merger.active:
                merger.add(name, self._lora(kind, path), scale)
            elif merger.active[name] != scale:
                merger.set_scale(name, scale)
