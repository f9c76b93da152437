"""An IP-Adapter's scale per block of the UNet (diffusers' layer-wise form, InstantStyle): the frames diffusers'
AnimateDiffPipeline draws after `set_ip_adapter_scale` with the same mapping, for one IP-Adapter and for two, and
one-line errors for a malformed mapping (before loading) or a block the base lacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from animatediff.pipeline.ip_adapter import IPAdapter
from animatediff.pipeline.ip_scales import check_ip_scale, parse_ip_scale
from tests.test_ip_adapter import ARGS, diffusers_reference, ip_folder, sample_image  # noqa: F401

STYLE = {"up": {"block_1": [0.0, 1.0, 0.0]}}
"""The tiny UNet's up block 1 (three transformers), the image attention in its second only."""
LAYOUT = {"down": {"block_0": [1.0, 0.0]}, "mid": 0.5}


@pytest.mark.parametrize("scale", [STYLE, LAYOUT, {"down": 0.8, "up": [0.2, 0.9, 0.4]}])
def test_a_scale_per_block_matches_diffusers(ip_folder, one_thread, scale):  # noqa: F811
    ours, folder = ip_folder
    reference = diffusers_reference(ours, folder, "ip.safetensors", scale)
    image = sample_image(0)
    expected = reference(**ARGS, ip_adapter_image=image, generator=torch.Generator().manual_seed(7), output_type="np")
    got = ours(**ARGS, seed=7, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", image, scale))
    everywhere = ours(**ARGS, seed=7, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", image, 1.0))
    assert np.abs(got - everywhere).mean() > 1e-3  # the blocks left at 0 take no image attention
    np.testing.assert_allclose(got, expected.frames, rtol=0, atol=1e-4)


def test_two_ip_adapters_each_in_their_own_blocks_match_diffusers(ip_folder, one_thread):  # noqa: F811
    ours, folder = ip_folder
    names = ["ip.safetensors", "ip_plus.safetensors"]
    reference = diffusers_reference(ours, folder, names, [STYLE, LAYOUT])
    images = [sample_image(0), sample_image(4, (30, 20))]
    expected = reference(**ARGS, ip_adapter_image=images, generator=torch.Generator().manual_seed(7), output_type="np")
    adapters = [IPAdapter(folder / n, image, s) for n, image, s in zip(names, images, [STYLE, LAYOUT], strict=True)]
    got = ours(**ARGS, seed=7, progress=False, ip_adapter=adapters)
    np.testing.assert_allclose(got, expected.frames, rtol=0, atol=1e-4)


def test_every_block_at_one_is_scale_one(ip_folder, one_thread):  # noqa: F811
    ours, folder = ip_folder
    image = sample_image(2)
    whole = {"down": 1, "mid": 1, "up": {"block_1": [1, 1, 1]}}
    blocks = ours(**ARGS, seed=3, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", image, whole))
    one = ours(**ARGS, seed=3, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", image, 1.0))
    np.testing.assert_allclose(blocks, one, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "scale, message",
    [
        ({"middle": 1}, "IP-Adapter scale: unknown part 'middle'; the parts are down, mid and up"),
        ({"up": {"1": 1}}, "IP-Adapter scale up: '1' is not a block name"),
        ({"up": {"block_1": [0, -1, 0]}}, "IP-Adapter scale up block_1 -1 must be a number ≥ 0"),
        ({"up": {"block_1": []}}, "IP-Adapter scale up block_1: an empty list"),
        ({"mid": [1]}, "IP-Adapter scale mid [1] must be a number ≥ 0"),
        ({}, "IP-Adapter scale: an empty mapping"),
    ],
)
def test_a_malformed_scale_is_one_line_before_loading(scale, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        IPAdapter("ip.safetensors", "a.png", scale)


def test_a_block_the_base_lacks_is_one_line(ip_folder, one_thread):  # noqa: F811
    ours, folder = ip_folder
    missing = IPAdapter(folder / "ip.safetensors", sample_image(1), {"up": {"block_0": 1.0}})  # no attention there
    message = "IP-Adapter scale up block_0: no attention there in this base's UNet; its up blocks with attention: "
    message += "block_1"
    with pytest.raises(InputError, match=message):
        ours(**ARGS, progress=False, ip_adapter=missing)
    few = IPAdapter(folder / "ip.safetensors", sample_image(1), {"up": {"block_1": [1.0, 0.0]}})
    with pytest.raises(InputError, match="IP-Adapter scale per block: Expected 3 scales for up.block_1, got 2"):
        ours(**ARGS, progress=False, ip_adapter=few)


def test_the_command_lines_scale_is_a_number_or_a_yaml_mapping():
    assert parse_ip_scale("0.6", "--ip-scale") == 0.6 and parse_ip_scale("1", "--ip-scale") == 1.0
    assert parse_ip_scale("{up: {block_1: [0, 1, 0]}}", "--ip-scale") == {"up": {"block_1": [0.0, 1.0, 0.0]}}
    assert check_ip_scale({"down": 1, "mid": 0}) == {"down": 1.0, "mid": 0.0}
    for text, message in (("high", "--ip-scale 'high': give a number ≥ 0, or the blocks"),
                          ("-1", "--ip-scale -1.0 must be a number ≥ 0"),
                          ("{up: [1, 2", "--ip-scale '{up: \\[1, 2': give a number"),
                          ("{up: {block_1: x}}", "--ip-scale up block_1 'x' must be a number")):  # fmt: skip
        with pytest.raises(InputError, match=message):
            parse_ip_scale(text, "--ip-scale")
