"""Regions and AND parts that differ only in their text share one unconditional prediction per step
(`pipeline/regions.py`): 1 + parts UNet passes in place of 2 × parts, the same frames."""

import numpy as np
import pytest

import animatediff.pipeline.animation as animation
from animatediff.pipeline.regions import Region
from tests.test_ip_adapter import ip_folder  # noqa: F401 - the fixture: a pipeline and a tiny IP-Adapter

BACKGROUND, LEFT, UP = "a red circle moving left", "a blue square moving up", "a green cross"
ARGS = dict(num_frames=4, height=16, width=16, num_inference_steps=2, guidance_scale=7.5, seed=3, progress=False)


def halves() -> tuple[np.ndarray, np.ndarray]:
    left, top = np.zeros((16, 16)), np.zeros((16, 16))
    left[:, :8] = 1
    top[:8] = 1
    return left, top


def drawn(pipe, monkeypatch, share: bool, *args, **kwargs) -> tuple[np.ndarray, list[int]]:  # noqa: ANN001
    """The frames, and the videos in each UNet pass of the first step."""
    if not share:
        monkeypatch.setattr(animation, "shares_unconditional", lambda *_: False)
    videos: list[int] = []
    hook = pipe.unet.register_forward_pre_hook(lambda _, inputs: videos.append(inputs[0].shape[0]))
    frames = pipe(*args, callback=lambda *_: videos.append(0), **kwargs)
    hook.remove()
    monkeypatch.undo()
    return frames, videos[: videos.index(0)]


def test_regions_share_the_unconditional_prediction(make_pipeline, monkeypatch, one_thread):
    pipe = make_pipeline("v2")
    left, top = halves()
    regions = [Region(LEFT, left), Region(UP, top)]
    shared, passes = drawn(pipe, monkeypatch, True, BACKGROUND, "blurry", regions=regions, **ARGS)
    alone, separate = drawn(pipe, monkeypatch, False, BACKGROUND, "blurry", regions=regions, **ARGS)
    assert passes == [1, 1, 1, 1] and separate == [2, 2, 2]  # ε_u once, then each text's ε alone
    np.testing.assert_allclose(shared, alone, rtol=0, atol=1e-5)
    # With windows and prompt travel the parts still share it; a rescaled guidance is not a sum, so it does not.
    windows = dict(ARGS, num_frames=6, context_length=4, context_overlap=2)
    travel = {0: BACKGROUND, 4: LEFT}
    shared, _ = drawn(pipe, monkeypatch, True, travel, "blurry", regions=regions, **windows)
    alone, _ = drawn(pipe, monkeypatch, False, travel, "blurry", regions=regions, **windows)
    np.testing.assert_allclose(shared, alone, rtol=0, atol=1e-5)
    _, rescaled = drawn(pipe, monkeypatch, True, BACKGROUND, regions=regions, guidance_rescale=0.5, **ARGS)
    assert rescaled == [2, 2, 2]


def test_and_parts_share_it_and_the_unconditional_part_is_it(make_pipeline, monkeypatch, one_thread):
    pipe = make_pipeline("v2")
    prompt = f"{BACKGROUND} AND {LEFT} :0.6"
    shared, passes = drawn(pipe, monkeypatch, True, prompt, "blurry", prompt_and=True, **ARGS)
    alone, separate = drawn(pipe, monkeypatch, False, prompt, "blurry", prompt_and=True, **ARGS)
    assert passes == [1, 1, 1] and separate == [2, 2, 2]  # ε_u, then the two parts; 1 − Σw weighs ε_u itself
    np.testing.assert_allclose(shared, alone, rtol=0, atol=1e-5)


def test_sdxl_regions_share_it_with_the_negative_pooled_text(tmp_path, monkeypatch, one_thread):
    from tests.sdxl_tiny import tiny_sdxl_pipeline

    pipe = tiny_sdxl_pipeline(tmp_path)
    left, top = halves()
    args = dict(ARGS, num_frames=2, height=32, width=32, regions=[Region(LEFT, left), Region(UP, top)])
    shared, passes = drawn(pipe, monkeypatch, True, BACKGROUND, "blurry", **args)
    alone, separate = drawn(pipe, monkeypatch, False, BACKGROUND, "blurry", **args)
    assert passes == [1, 1, 1, 1] and separate == [2, 2, 2]
    np.testing.assert_allclose(shared, alone, rtol=0, atol=1e-5)


def test_regions_with_image_prompts_share_it_unless_their_negatives_differ(ip_folder, monkeypatch, one_thread):  # noqa: F811
    from animatediff.pipeline.ip_adapter import IPAdapter
    from tests.test_ip_adapter import sample_image

    pipe, folder = ip_folder
    left, top = halves()
    ip_adapter = IPAdapter(folder / "ip.safetensors", sample_image(0), 0.7)
    regions = [Region(LEFT, left, ip_image=sample_image(1)), Region(UP, top)]
    args = dict(ARGS, ip_adapter=ip_adapter, regions=regions)
    shared, passes = drawn(pipe, monkeypatch, True, BACKGROUND, "blurry", **args)
    alone, separate = drawn(pipe, monkeypatch, False, BACKGROUND, "blurry", **args)
    assert passes == [1, 1, 1, 1] and separate == [2, 2, 2]
    np.testing.assert_allclose(shared, alone, rtol=0, atol=1e-5)
    two_images = [Region(LEFT, left, ip_image=[sample_image(1), sample_image(2)]), Region(UP, top)]
    _, passes = drawn(pipe, monkeypatch, True, BACKGROUND, "blurry", **dict(args, regions=two_images))
    assert passes == [2, 2, 2]  # two images' negative is not one image's


@pytest.mark.parametrize("guess_mode", [False, True])
def test_controls_acting_everywhere_are_shared_and_confined_ones_are_not(make_pipeline, monkeypatch, one_thread,
                                                                         guess_mode):  # fmt: skip
    import torch

    from animatediff.pipeline.controlnet import ControlNet
    from animatediff.pipeline.sparse_ctrl import SparseCtrl
    from tests.controlnet_helpers import tiny_controlnet
    from tests.sparse_ctrl_helpers import tiny_sparse_ctrl

    pipe = make_pipeline("v2")
    left, top = halves()
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    control = ControlNet(tiny_controlnet(pipe.unet.unet), images, scale=0.8, guess_mode=guess_mode)
    sparse = SparseCtrl(tiny_sparse_ctrl(pipe.unet.unet, "rgb"), {0: images[0]}, guess_mode=guess_mode)
    args = dict(ARGS, regions=[Region(LEFT, left), Region(UP, top)], controlnets=[control], sparse_ctrls=[sparse])
    shared, passes = drawn(pipe, monkeypatch, True, BACKGROUND, "blurry", **args)
    alone, separate = drawn(pipe, monkeypatch, False, BACKGROUND, "blurry", **args)
    assert passes == [1, 1, 1, 1] and separate == [2, 2, 2]
    np.testing.assert_allclose(shared, alone, rtol=0, atol=1e-5)
    confined = ControlNet(control.model, images, scale=0.8, regions=[0])
    _, passes = drawn(pipe, monkeypatch, True, BACKGROUND, "blurry", **dict(args, controlnets=[confined]))
    assert passes == [2, 2, 2]
