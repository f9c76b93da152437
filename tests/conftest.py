import os

import pytest
import torch

from animatediff.models import inflate_unet
from animatediff.pipeline import AnimationPipeline
from tests.tiny import official_scheduler, tiny_motion, tiny_text_encoder, tiny_tokenizer, tiny_unet, tiny_vae


@pytest.fixture
def tokenizer(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture
def make_pipeline(tokenizer):
    def make(version: str = "v3", random: bool = True) -> AnimationPipeline:
        unet = inflate_unet(tiny_unet(), tiny_motion(version, random=random))
        return AnimationPipeline(tokenizer, tiny_text_encoder(len(tokenizer)), tiny_vae(), unet, official_scheduler())

    return make


@pytest.fixture
def base_folder(tmp_path, tokenizer):
    """A tiny SD1.x model in the diffusers folder layout."""
    from tests.tiny import tiny_text_encoder, tiny_unet, tiny_vae

    folder = tmp_path / "base"
    tokenizer.save_pretrained(folder / "tokenizer")
    tiny_text_encoder(len(tokenizer)).save_pretrained(folder / "text_encoder")
    tiny_vae().save_pretrained(folder / "vae")
    tiny_unet().save_pretrained(folder / "unet")
    official_scheduler().save_pretrained(folder / "scheduler")
    return folder


@pytest.fixture
def pipeline_calls(monkeypatch):
    """The keyword arguments of every `AnimationPipeline` call made while the test runs (each call still runs)."""
    calls = []
    call = AnimationPipeline.__call__

    def recording(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(kwargs)
        return call(self, *args, **kwargs)

    monkeypatch.setattr(AnimationPipeline, "__call__", recording)
    return calls


@pytest.fixture
def one_thread():
    """Tiny models run an order of magnitude faster on one thread when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def models_dir(tmp_path):
    """A models folder for the web app: its subfolders, a LoRA, a symlink out of it, a broken checkpoint."""
    root = tmp_path / "models"
    for sub in ("Stable-diffusion", "Lora", "motion_modules", "motion_lora", "ControlNet"):
        (root / sub).mkdir(parents=True)
    (root / "Lora" / "style.safetensors").write_bytes(b"not really")
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(b"outside")
    (root / "Lora" / "escape.safetensors").symlink_to(outside)
    (root / "Stable-diffusion" / "broken.safetensors").write_bytes(b"\x00" * 64)
    return root


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (the README's `-n 2`), each worker computes on one thread: the workers share the cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
