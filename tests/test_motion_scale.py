"""Motion scale: out = x + s·(module(x) − x) per block group; 0 is the image model alone, 1 the modules as trained;
against diffusers' UNetMotionModel with its motion modules scaled the same way, and through the pipeline."""

import numpy as np
import pytest
import torch
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from torch import nn

from animatediff.errors import InputError
from animatediff.formats.motion_lora import save_motion_lora
from animatediff.models import inflate_unet
from tests.diffusers_reference import diffusers_motion_unet
from tests.tiny import tiny_motion, tiny_unet

RUN = dict(num_frames=4, num_inference_steps=2, seed=0, progress=False)


class Scaled(nn.Module):
    """A diffusers motion module whose contribution is scaled: x + s·(module(x) − x)."""

    def __init__(self, module: nn.Module, scale: float) -> None:
        super().__init__()
        self.module, self.scale = module, scale

    def forward(self, x, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        return x + self.scale * (self.module(x, *args, **kwargs) - x)


def scaled_reference(unet, modules, scales: dict[str, float]):  # noqa: ANN001, ANN201
    reference = diffusers_motion_unet(unet, modules)
    groups = [("down", b) for b in reference.down_blocks] + [("up", b) for b in reference.up_blocks]
    groups += [("mid", reference.mid_block)] if hasattr(reference.mid_block, "motion_modules") else []
    for group, block in groups:
        for i, module in enumerate(block.motion_modules):
            assert isinstance(module, AnimateDiffTransformer3D)
            block.motion_modules[i] = Scaled(module, scales[group])
    return reference


@pytest.fixture
def inputs():
    torch.manual_seed(0)
    return torch.randn(2, 4, 6, 8, 8), torch.randn(2, 7, 32)


@pytest.mark.parametrize(
    "scale, per_group",
    [
        (0.5, {"down": 0.5, "mid": 0.5, "up": 0.5}),
        ({"down": 0.3, "mid": 1.7, "up": 0.0}, {"down": 0.3, "mid": 1.7, "up": 0.0}),
        ({"up": 2.0}, {"down": 1.0, "mid": 1.0, "up": 2.0}),
    ],
)
def test_scaled_motion_matches_diffusers_with_its_modules_scaled(inputs, one_thread, scale, per_group):
    x, ctx = inputs
    unet, modules = tiny_unet(), tiny_motion("v2")
    reference = scaled_reference(unet, modules, per_group)
    ours = inflate_unet(unet, modules)
    ours.motion_scale = scale
    with torch.no_grad():
        expected = reference(x, 500, encoder_hidden_states=ctx.repeat_interleave(6, 0)).sample
        got = ours(x, 500, ctx)
        ours.motion_scale = 1.0
        plain = ours(x, 500, ctx)
    assert (got - plain).abs().max() > 1e-2  # the scale changes something
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_zero_is_the_image_model_alone_and_one_is_todays_exactly(inputs, one_thread):
    x, ctx = inputs
    ours = inflate_unet(tiny_unet(), tiny_motion("v2"))
    with torch.no_grad():
        today = ours(x, 500, ctx)
        ours.motion_enabled = False
        off = ours(x, 500, ctx)
        ours.motion_enabled = True
        ours.motion_scale = 0
        zero = ours(x, 500, ctx)
        ours.motion_scale = {"down": 1, "mid": 1, "up": 1}
        one = ours(x, 500, ctx)
        # diffusers' plain 2-D UNet, frame by frame: frames drawn independently of each other.
        image = tiny_unet()(x.permute(0, 2, 1, 3, 4).flatten(0, 1), 500, ctx.repeat_interleave(6, 0)).sample
    torch.testing.assert_close(zero, off, rtol=0, atol=0)
    torch.testing.assert_close(one, today, rtol=0, atol=0)
    torch.testing.assert_close(zero.permute(0, 2, 1, 3, 4).flatten(0, 1), image, rtol=0, atol=1e-4)
    assert ours.motion_scale == 1.0


def test_the_pipeline_scales_motion_for_one_call(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    plain = pipe("a cat", **RUN)
    np.testing.assert_array_equal(pipe("a cat", motion_scale=1.0, **RUN), plain)
    half = pipe("a cat", motion_scale=0.5, **RUN)
    zero = pipe("a cat", motion_scale=0.0, **RUN)
    assert pipe.unet.motion_scale == 1.0  # restored after each call
    pipe.unet.motion_enabled = False
    np.testing.assert_array_equal(zero, pipe("a cat", **RUN))
    pipe.unet.motion_enabled = True
    assert np.abs(half - plain).max() > 1e-3 and np.abs(half - zero).max() > 1e-3
    pipe.unet.motion_scale = {"up": 0.5}
    with pytest.raises(InputError):
        pipe("a cat", motion_scale=-1, **RUN)
    assert pipe.unet.motion_scale == {"down": 1.0, "mid": 1.0, "up": 0.5}  # the UNet's own setting, untouched


def test_motion_lora_scales_are_unaffected(make_pipeline, tmp_path, one_thread):
    pipe = make_pipeline("v2")
    mm = pipe.unet.motion_modules
    g = torch.Generator().manual_seed(0)
    targets = [k for k in mm.state_dict() if k.endswith("attention_blocks.0.to_q.weight")]
    lora = {
        k: (
            torch.randn(2, mm.state_dict()[k].shape[1], generator=g),
            torch.randn(mm.state_dict()[k].shape[0], 2, generator=g),
        )
        for k in targets
    }
    pipe.add_lora(save_motion_lora(lora, tmp_path / "m.safetensors"), 0.6, kind="motion", name="zoom")
    weights = {k: v.clone() for k, v in mm.state_dict().items()}
    pipe("a cat", motion_scale=0.5, **RUN)
    assert pipe.loras.active == {"zoom": 0.6}
    assert all(torch.equal(weights[k], v) for k, v in mm.state_dict().items())


@pytest.mark.parametrize(
    "scale, message",
    [
        (-0.5, "motion scale -0.5 must be a number ≥ 0"),
        (float("nan"), "motion scale nan must be a number ≥ 0"),
        (True, "motion scale True"),
        ({"left": 1.0}, "motion scale group 'left': expected one of down, mid, up"),
        ({"up": -1}, "motion scale of 'up' -1 must be a number ≥ 0"),
    ],
)
def test_bad_motion_scales_are_one_line_input_errors(one_thread, scale, message):
    unet = inflate_unet(tiny_unet(), tiny_motion("v2"))
    with pytest.raises(InputError) as err:
        unet.motion_scale = scale
    assert message in str(err.value) and "\n" not in str(err.value)
    assert unet.motion_scale == 1.0
