"""T2I-Adapter single files (`formats/t2i_adapter.py`): TencentARC's original layout, full and light, written here as
its networks are described (an unshuffle by 8, a first convolution, blocks of 3×3 then 1×1 convolutions with
shortcuts, average pooling between levels; the light adapter's 1×1 in/out convolutions around 3×3 blocks), loads into
a diffusers T2IAdapter giving the original network's features; diffusers-named files load too; other forms are one
line, also from the CLI."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from animatediff.errors import InputError
from animatediff.formats.controlnet import load_controlnet
from tests.tiny import tiny_unet

WIDTHS = [32, 64]  # the tiny UNet's blocks
LIGHT = [32, 64, 64]  # a tiny UNet's blocks for the light adapter, whose last level repeats the one before


class Block(nn.Module):
    """The full adapter's block: to `width` by a 1×1 convolution where the width changes, then x + 1×1(relu(3×3(x)))."""

    def __init__(self, before: int, width: int, down: bool) -> None:
        super().__init__()
        self.down = nn.AvgPool2d(2) if down else nn.Identity()
        self.in_conv = nn.Conv2d(before, width, 1) if before != width else None
        self.block1, self.block2 = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        x = x if self.in_conv is None else self.in_conv(x)
        return x + self.block2(torch.relu(self.block1(x)))


class OriginalAdapter(nn.Module):
    """TencentARC's full adapter (`body` flat: level × blocks + block), a feature after each level."""

    def __init__(self, channels: int, blocks: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(channels * 64, WIDTHS[0], 3, padding=1)
        self.blocks = blocks
        self.body = nn.ModuleList(
            Block(WIDTHS[max(level - (b == 0), 0)], WIDTHS[level], level > 0 and b == 0)
            for level in range(len(WIDTHS))
            for b in range(blocks)
        )

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x, features = self.conv_in(nn.functional.pixel_unshuffle(image, 8)), []
        for k, block in enumerate(self.body):
            x = block(x)
            if k % self.blocks == self.blocks - 1:
                features.append(x)
        return features


class LightBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.block1, self.block2 = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block2(torch.relu(self.block1(x)))


class Extractor(nn.Module):
    """The light adapter's level: pooled (after the first), 1×1 to a quarter of the width, blocks, 1×1 out."""

    def __init__(self, before: int, width: int, blocks: int, down: bool) -> None:
        super().__init__()
        self.down = nn.AvgPool2d(2) if down else nn.Identity()
        self.in_conv, self.out_conv = nn.Conv2d(before, width // 4, 1), nn.Conv2d(width // 4, width, 1)
        self.body = nn.Sequential(*(LightBlock(width // 4) for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_conv(self.body(self.in_conv(self.down(x))))


class OriginalLightAdapter(nn.Module):
    """TencentARC's light adapter (the colour adapter: its last level as wide as the one before)."""

    def __init__(self, blocks: int) -> None:
        super().__init__()
        befores = [3 * 64, *LIGHT[:-1]]
        self.body = nn.ModuleList(Extractor(b, w, blocks, i > 0) for i, (b, w) in enumerate(zip(befores, LIGHT)))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x, features = nn.functional.pixel_unshuffle(image, 8), []
        for level in self.body:
            x = level(x)
            features.append(x)
        return features


def _randomised(module: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    return module.eval()


def _save(sd: dict[str, torch.Tensor], path) -> None:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(sd, path)


@pytest.mark.parametrize(
    "original, channels, suffix, widths",
    [
        (lambda: OriginalAdapter(3, 2), 3, ".pth", WIDTHS),  # depth, openpose, …: RGB
        (lambda: OriginalAdapter(1, 2), 1, ".safetensors", WIDTHS),  # sketch, canny: grey
        (lambda: OriginalAdapter(3, 1), 3, ".pth", WIDTHS),
        (lambda: OriginalLightAdapter(2), 3, ".pth", LIGHT),  # color
    ],
)
def test_an_original_file_gives_the_original_networks_features(original, channels, suffix, widths, tmp_path):
    network = _randomised(original(), 7)
    _save(network.state_dict(), tmp_path / f"adapter{suffix}")
    adapter = load_controlnet(tmp_path / f"adapter{suffix}", tiny_unet(channels=tuple(widths)))
    assert adapter.config.in_channels == channels
    image = torch.rand(2, channels, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, expected = adapter(image), network(image)
    assert len(got) == len(expected) == len(widths)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)


@pytest.mark.parametrize("adapter_type, widths", [("full_adapter", WIDTHS), ("light_adapter", LIGHT)])
def test_a_file_in_diffusers_names_loads_as_its_folder_does(adapter_type, widths, tmp_path):
    from diffusers import T2IAdapter

    torch.manual_seed(0)
    channels = widths[:-1] if adapter_type == "light_adapter" else widths
    made = T2IAdapter(in_channels=3, channels=channels, num_res_blocks=2, downscale_factor=8, adapter_type=adapter_type)
    _save(made.state_dict(), tmp_path / "adapter.safetensors")
    loaded = load_controlnet(tmp_path / "adapter.safetensors", tiny_unet(channels=tuple(widths)), torch.float16)
    assert loaded.dtype == torch.float16 and loaded.config.adapter_type == adapter_type
    for key, value in made.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value.half(), rtol=0, atol=0)


def test_other_forms_are_one_line(tmp_path):
    full = _randomised(OriginalAdapter(3, 2), 0).state_dict()
    cases = {
        "style": ({"style_embedding": torch.zeros(1, 8, 16), "proj": torch.zeros(16, 32)}, "a T2I style adapter"),
        "skep": ({**full, "body.0.skep.weight": torch.zeros(32, 32, 1, 1)}, "of a form diffusers' T2IAdapter does not"),
        "xl": ({**full, "conv_in.weight": torch.zeros(32, 768, 3, 3)}, "takes 768 inputs, not an SD1.x T2I-Adapter"),
        "no conv_in": ({k: v for k, v in full.items() if "conv_in" not in k}, "not a T2I-Adapter this loader reads"),
        "a block short": ({k: v for k, v in full.items() if k[5:6] != "3"}, "weights do not fit the network"),
    }
    for name, (sd, message) in cases.items():
        _save(sd, tmp_path / f"{name}.pth")
        with pytest.raises(InputError, match=message):
            load_controlnet(tmp_path / f"{name}.pth", tiny_unet())


def test_generate_loads_an_original_file_as_a_t2i_adapter(tmp_path, base_folder, capsys):
    """The tiny base's VAE makes latents 2× smaller than images, an original adapter 8×: the file got as far as the
    adapter's check, one line, before anything is denoised."""
    from PIL import Image

    from animatediff.formats import save_motion_modules
    from tests.cli_helpers import generate
    from tests.tiny import tiny_motion

    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    _save(_randomised(OriginalAdapter(3, 2), 0).state_dict(), tmp_path / "t2iadapter_depth_sd15v2.pth")
    (tmp_path / "frames").mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16)).save(tmp_path / "frames" / f"{i:04d}.png")
    control = [
        "--controlnet",
        str(tmp_path / "t2iadapter_depth_sd15v2.pth"),
        "--control-frames",
        str(tmp_path / "frames"),
    ]
    assert generate(base_folder, motion, tmp_path / "o.npy", *control) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "a T2I-Adapter for latents 8× smaller than its images, but this base's VAE makes them 2× smaller" in error
