"""Several IP-Adapters at once: the frames diffusers' AnimateDiffPipeline draws with a list of IP-Adapters
(`load_ip_adapter` of several weights, a scale each, one image prompt each), each adapter's own scale and keyframes,
image encoders loaded once per folder, and one-line errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from animatediff.pipeline import ip_call as ip_module
from animatediff.pipeline.ip_adapter import IPAdapter, ip_adapters
from animatediff.pipeline.regions import Region
from tests.test_ip_adapter import ARGS, diffusers_reference, ip_folder, sample_image, tiny_image_encoder  # noqa: F401


@pytest.mark.parametrize("scales", [(0.6, 0.9), (1.0, 0.5)])
def test_two_ip_adapters_match_diffusers_multi_ip_adapter(ip_folder, one_thread, scales):  # noqa: F811
    """A plain IP-Adapter and a Plus one, each with its own image and scale, as diffusers runs a list of them."""
    ours, folder = ip_folder
    names = ["ip.safetensors", "ip_plus.safetensors"]
    reference = diffusers_reference(ours, folder, names, list(scales))
    images = [sample_image(0), sample_image(4, (30, 20))]
    expected = reference(**ARGS, ip_adapter_image=images, generator=torch.Generator().manual_seed(7), output_type="np")
    adapters = [IPAdapter(folder / n, image, s) for n, image, s in zip(names, images, scales, strict=True)]
    got = ours(**ARGS, seed=7, progress=False, ip_adapter=adapters)
    first = ours(**ARGS, seed=7, progress=False, ip_adapter=adapters[0])
    assert got.shape == (1, 6, 16, 16, 3)
    assert np.abs(got - first).mean() > 1e-2  # the second image prompt steers too
    np.testing.assert_allclose(got, expected.frames, rtol=0, atol=1e-4)


def test_a_list_of_one_is_the_ip_adapter_and_a_second_at_scale_0_adds_nothing(ip_folder, one_thread):  # noqa: F811
    ours, folder = ip_folder
    one = IPAdapter(folder / "ip.safetensors", sample_image(1), 0.8)
    alone = ours(**ARGS, seed=3, progress=False, ip_adapter=one)
    listed = ours(**ARGS, seed=3, progress=False, ip_adapter=[one])
    np.testing.assert_allclose(listed, alone, rtol=0, atol=1e-6)
    silent = IPAdapter(folder / "ip_plus.safetensors", sample_image(2), 0.0)
    both = ours(**ARGS, seed=3, progress=False, ip_adapter=[one, silent])
    np.testing.assert_allclose(both, alone, rtol=0, atol=1e-5)
    plain = ours(**ARGS, seed=3, progress=False)
    np.testing.assert_allclose(ours(**ARGS, seed=3, progress=False, ip_adapter=[]), plain, rtol=0, atol=0)


def test_each_ip_adapter_takes_its_own_keyframes(ip_folder, one_thread, monkeypatch):  # noqa: F811
    """The first adapter's images travel over its keyframes, the second's stay one for every frame."""
    ours, folder = ip_folder
    seen = []
    original = ip_module.ImageEmbeds.unet_kwargs

    def spy(self, x, t, text, frames):  # noqa: ANN001, ANN202
        kwargs = original(self, x, t, text, frames)
        seen.append(kwargs["added_cond_kwargs"]["image_embeds"])
        return kwargs

    monkeypatch.setattr(ip_module.ImageEmbeds, "unet_kwargs", spy)
    keyed = IPAdapter(folder / "ip.safetensors", {0: sample_image(1), 5: sample_image(2)}, 0.8)
    still = IPAdapter(folder / "ip_plus.safetensors", sample_image(3), 0.8)
    got = ours(**{**ARGS, "num_inference_steps": 1}, seed=3, progress=False, ip_adapter=[keyed, still])
    assert np.isfinite(got).all()
    travelling, steady = seen[0]
    frames = ARGS["num_frames"]
    assert travelling.shape == (2 * frames, 1, 16) and steady.shape[0] == 2 * frames
    cond = travelling[frames:]
    assert not torch.allclose(cond[0], cond[-1])  # frame 0 and frame 5: the two keyframes' images
    assert torch.equal(steady[frames:], steady[frames : frames + 1].expand_as(steady[frames:]))


def test_image_encoders_are_loaded_once_per_folder(ip_folder, one_thread, monkeypatch, tmp_path):  # noqa: F811
    ours, folder = ip_folder
    loads = []
    load = ip_module.load_image_encoder
    monkeypatch.setattr(ip_module, "load_image_encoder", lambda *a, **k: loads.append(a[0]) or load(*a, **k))
    args = {**ARGS, "num_inference_steps": 1}
    shared = [IPAdapter(folder / "ip.safetensors", sample_image(1)), IPAdapter(folder / "ip_plus.safetensors",
                                                                              sample_image(2))]  # fmt: skip
    ours(**args, progress=False, ip_adapter=shared)
    assert len(loads) == 1
    ours(**args, progress=False, ip_adapter=shared)  # the same adapters again: kept
    assert len(loads) == 1
    other = shutil.copytree(folder / "image_encoder", tmp_path / "other_encoder")
    own = [shared[0], IPAdapter(folder / "ip_plus.safetensors", sample_image(2), image_encoder=other)]
    ours(**args, progress=False, ip_adapter=own)
    assert [str(p) for p in loads[1:]] == [str(folder / "image_encoder"), str(other)]


def test_bad_lists_fail_in_one_line(ip_folder, one_thread, tmp_path):  # noqa: F811
    ours, folder = ip_folder
    one = IPAdapter(folder / "ip.safetensors", sample_image(1))
    with pytest.raises(InputError, match="ip_adapter must be IPAdapters, got str"):
        ours(**ARGS, progress=False, ip_adapter=[one, "ip.safetensors"])
    late = IPAdapter(folder / "ip_plus.safetensors", {0: sample_image(1), 9: sample_image(2)})
    with pytest.raises(InputError, match="IP-Adapter keyframe 9 is beyond the clip's last frame, 5"):
        ours(**ARGS, progress=False, ip_adapter=[one, late])
    wide = tiny_image_encoder(tmp_path / "wide", projection_dim=24)
    with pytest.raises(InputError, match="gives projection_dim 24, the IP-Adapter takes 16"):
        plus = IPAdapter(folder / "ip_plus.safetensors", sample_image(1))
        ours(**ARGS, progress=False, ip_adapter=[plus, IPAdapter(folder / "ip.safetensors", sample_image(1), 1, wide)])
    region = Region(prompt="a red circle", mask=np.ones((16, 16)), ip_image=sample_image(2))
    with pytest.raises(InputError, match="region 0: its image prompt is drawn with the call's IP-Adapter; give one"):
        ours(**ARGS, progress=False, ip_adapter=[one, one], regions=[region])
    assert ip_adapters(None) == () and ip_adapters(one) == (one,) and ip_adapters((one, one)) == (one, one)
