"""IP-Adapter on an SDXL base: the frames diffusers' AnimateDiffSDXLPipeline draws with the same IP-Adapter (tiny and
random, made for the tiny SDXL's cross-attention width), at one scale and at InstantStyle's SDXL style blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPVisionModelWithProjection

from animatediff.pipeline.ip_adapter import IPAdapter
from tests.sdxl_tiny import tiny_sdxl_pipeline
from tests.test_ip_adapter import sample_image, tiny_image_encoder, tiny_ip_adapter
from tests.test_sdxl_pipeline import reference

ARGS = dict(prompt="a red circle moving left", height=32, width=32, num_frames=6, num_inference_steps=3,
            guidance_scale=7.5)  # fmt: skip
STYLE = {"up": {"block_0": [0.0, 1.0, 0.0]}}
"""InstantStyle's style blocks for SDXL (diffusers' docs): the first up block's second transformer."""


@pytest.fixture(scope="module")
def sdxl_ip(tmp_path_factory):
    """(the tiny SDXL pipeline, a folder with sdxl_ip.safetensors and image_encoder/)."""
    pipe = tiny_sdxl_pipeline(tmp_path_factory.mktemp("sdxl"))
    folder = tmp_path_factory.mktemp("ip")
    save_file(tiny_ip_adapter(pipe.unet.unet), str(folder / "sdxl_ip.safetensors"))
    tiny_image_encoder(folder / "image_encoder")
    return pipe, folder


def _reference(ours, folder, scale):  # noqa: ANN001, ANN202
    encoder = CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder").eval()
    pipe = reference(ours, image_encoder=encoder, feature_extractor=None)
    pipe.load_ip_adapter(str(folder), subfolder="", weight_name="sdxl_ip.safetensors", image_encoder_folder=None)
    pipe.set_ip_adapter_scale(scale)
    return pipe


@pytest.mark.parametrize("scale", [0.8, STYLE])
def test_an_sdxl_ip_adapter_matches_diffusers_sdxl_pipeline(sdxl_ip, one_thread, scale):
    ours, folder = sdxl_ip
    image = sample_image(1)
    generator = torch.Generator().manual_seed(5)
    expected = _reference(ours, folder, scale)(**ARGS, ip_adapter_image=image, generator=generator, output_type="np")
    got = ours(**ARGS, seed=5, progress=False, ip_adapter=IPAdapter(folder / "sdxl_ip.safetensors", image, scale))
    plain = ours(**ARGS, seed=5, progress=False)
    assert got.shape == (1, 6, 32, 32, 3)
    assert np.abs(got - plain).mean() > 1e-3  # the image prompt steers the frames
    np.testing.assert_allclose(got, expected.frames, rtol=0, atol=1e-4)
