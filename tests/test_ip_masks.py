"""An IP-Adapter's mask: its image attention only where the mask is white. The frames diffusers' AnimateDiffPipeline
draws with `cross_attention_kwargs={"ip_adapter_masks": ...}` (masks made by its `IPAdapterMaskProcessor`), for two
IP-Adapters on two halves of the frame and for a mask per frame; context windows take their frames' masks; bad masks
are one line before any model loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.image_processor import IPAdapterMaskProcessor
from PIL import Image

from animatediff.errors import InputError, InputNotFound
from animatediff.pipeline.ip_adapter import IPAdapter
from animatediff.pipeline.ip_call import ImageEmbeds
from tests.test_ip_adapter import ARGS, diffusers_reference, ip_folder, sample_image  # noqa: F401

LEFT = np.zeros((16, 16))
LEFT[:, :8] = 1.0
RIGHT = 1.0 - LEFT


def _theirs(mask: np.ndarray) -> torch.Tensor:
    """A mask as diffusers' IPAdapterMaskProcessor makes it for a 16×16 output: (1, 1, 16, 16)."""
    image = Image.fromarray((mask * 255).astype(np.uint8))
    return IPAdapterMaskProcessor().preprocess([image], height=16, width=16)


def test_two_masked_ip_adapters_match_diffusers(ip_folder, one_thread):  # noqa: F811
    """A plain IP-Adapter's image on the left half, a Plus one's on the right, as diffusers masks them."""
    ours, folder = ip_folder
    names = ["ip.safetensors", "ip_plus.safetensors"]
    reference = diffusers_reference(ours, folder, names, [0.9, 0.8])
    images = [sample_image(0), sample_image(4, (30, 20))]
    masks = {"ip_adapter_masks": [_theirs(LEFT), _theirs(RIGHT)]}
    generator = torch.Generator().manual_seed(7)
    expected = reference(**ARGS, ip_adapter_image=images, generator=generator, output_type="np",
                         cross_attention_kwargs=masks)  # fmt: skip
    masked = [IPAdapter(folder / n, i, s, mask=m) for n, i, s, m in zip(names, images, [0.9, 0.8], [LEFT, RIGHT])]
    got = ours(**ARGS, seed=7, progress=False, ip_adapter=masked)
    whole = ours(**ARGS, seed=7, progress=False, ip_adapter=[IPAdapter(folder / n, i, s) for n, i, s in
                                                             zip(names, images, [0.9, 0.8])])  # fmt: skip
    assert np.abs(got - whole).mean() > 1e-3  # the masks confine each image prompt
    np.testing.assert_allclose(got, expected.frames, rtol=0, atol=1e-4)


def test_a_mask_per_frame_matches_diffusers_given_one_mask_per_row(ip_folder, one_thread):  # noqa: F811
    """Masks at frames 0 and 3 (a mask source {frame: mask}): each frame takes the last at or before it; diffusers'
    processor, handed one mask per row of its guided batch, draws the same."""
    ours, folder = ip_folder
    frames = ARGS["num_frames"]
    reference = diffusers_reference(ours, folder, "ip.safetensors", 1.0)
    per_frame = [LEFT if f < 3 else RIGHT for f in range(frames)]
    rows = torch.cat([_theirs(m) for m in per_frame] * 2)  # the unconditional video's frames, then the prompted's
    generator = torch.Generator().manual_seed(5)
    expected = reference(**ARGS, ip_adapter_image=sample_image(2), generator=generator, output_type="np",
                         cross_attention_kwargs={"ip_adapter_masks": [rows]})  # fmt: skip
    keyed = IPAdapter(folder / "ip.safetensors", sample_image(2), mask={0: LEFT, 3: RIGHT})
    got = ours(**ARGS, seed=5, progress=False, ip_adapter=keyed)
    np.testing.assert_allclose(got, expected.frames, rtol=0, atol=1e-4)
    still = ours(**ARGS, seed=5, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", sample_image(2),
                                                                      mask=LEFT))  # fmt: skip
    assert np.abs(got[:, 3:] - still[:, 3:]).mean() > 1e-3


def test_a_white_mask_is_no_mask_and_windows_take_their_frames_masks(ip_folder, one_thread, monkeypatch):  # noqa: F811
    ours, folder = ip_folder
    image = sample_image(3)
    plain = ours(**ARGS, seed=2, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", image))
    white = ours(**ARGS, seed=2, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", image,
                                                                      mask=np.ones((16, 16))))  # fmt: skip
    np.testing.assert_allclose(white, plain, rtol=0, atol=1e-5)
    masks = torch.arange(6.0)[:, None, None].expand(6, 2, 2)  # frame i's mask: all i
    kwargs = ImageEmbeds([torch.zeros(1, 2, 4)], [torch.zeros(1, 2, 4)], [masks]).unet_kwargs(
        torch.zeros(4, 4, 3, 2, 2), None, None, torch.tensor([2, 3, 4]))  # fmt: skip
    (rows,) = kwargs["cross_attention_kwargs"]["ip_adapter_masks"]
    assert rows.shape == (12, 2, 2, 2)  # 4 videos × 3 frames, 2 images
    assert rows[:, 0, 0, 0].tolist() == [2.0, 3.0, 4.0] * 4
    assert "cross_attention_kwargs" not in ImageEmbeds([torch.zeros(1, 2, 4)], None, [None]).unet_kwargs(
        torch.zeros(1, 4, 3, 2, 2), None, None, torch.tensor([0, 1, 2]))  # fmt: skip


def test_bad_masks_are_one_line(ip_folder, one_thread, tmp_path):  # noqa: F811
    ours, folder = ip_folder
    args = {**ARGS, "num_inference_steps": 1}
    with pytest.raises(InputError, match=r"IP-Adapter mask at frame 0: an array must be \(H, W\) with values in"):
        ours(**args, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", sample_image(), mask=LEFT * 2))
    with pytest.raises(InputNotFound, match="IP-Adapter mask: file not found"):
        ours(**args, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", sample_image(),
                                                          mask=tmp_path / "none.png"))  # fmt: skip
    with pytest.raises(InputNotFound, match="IP-Adapter mask: file not found: .*none.png"):
        IPAdapter(folder / "ip.safetensors", sample_image(), mask=tmp_path / "none.png").check_files()
    with pytest.raises(InputError, match="IP-Adapter mask: no mask at a frame below 6"):
        ours(**args, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", sample_image(), mask={9: LEFT}))
