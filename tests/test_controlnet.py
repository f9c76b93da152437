"""The ControlNet condition: which frames and steps it sees, its per-frame text, and its input checks."""

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from einops import rearrange

from animatediff.errors import InputError
from animatediff.pipeline.controlnet import ControlNet, ControlNetCondition, active_steps, controlnet_conditions
from animatediff.sampling.context import ContextSchedule
from tests.controlnet_helpers import tiny_controlnet


class Recording(torch.nn.Module):
    """A ControlNet that records the control images and timestep of every call, then runs the real one."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[float, torch.Tensor]] = []

    @property
    def config(self):
        return self.inner.config

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype

    def forward(self, sample, timestep, controlnet_cond, **kwargs):
        self.calls.append((float(timestep), controlnet_cond.clone()))
        return self.inner(sample, timestep, controlnet_cond=controlnet_cond, **kwargs)


def numbered_frames(num_frames: int, size: int = 16) -> torch.Tensor:
    """Frame k filled with k / 100, so a control image tells which frame it is."""
    return (torch.arange(num_frames) / 100).view(-1, 1, 1, 1).expand(num_frames, 3, size, size).clone()


def frame_numbers(cond: torch.Tensor) -> list[int]:
    return [round(v * 100) for v in cond[:, 0, 0, 0].tolist()]


@pytest.fixture
def pipe(make_pipeline, one_thread):
    return make_pipeline("v3")


def test_each_context_window_gets_its_own_control_frames(pipe):
    recording = Recording(tiny_controlnet(pipe.unet.unet))
    context = ContextSchedule(4, 1)
    out = pipe("a red circle", num_frames=10, num_inference_steps=2, guidance_scale=7.5, seed=3, progress=False,
               context=context, controlnets=[ControlNet(recording, numbered_frames(10))])  # fmt: skip
    assert out.shape == (1, 10, 16, 16, 3) and np.isfinite(out).all()
    windows = context.windows(10)
    assert len(windows) == 3 and len(recording.calls) == 2 * len(windows)
    for i, (_, cond) in enumerate(recording.calls):
        # Under guidance the batch holds the window's frames for the unconditional video, then the conditional one.
        assert frame_numbers(cond) == windows[i % len(windows)] * 2


def test_it_acts_only_in_its_fraction_of_the_steps(pipe):
    recording = Recording(tiny_controlnet(pipe.unet.unet))
    timesteps = []
    pipe("a red circle", num_frames=3, num_inference_steps=5, seed=3, progress=False,
         callback=lambda i, t, x: timesteps.append(float(t)),
         controlnets=[ControlNet(recording, numbered_frames(3), start=0.2, end=0.8)])  # fmt: skip
    assert active_steps(5, 0.2, 0.8) == [False, True, True, True, False]
    assert [t for t, _ in recording.calls] == timesteps[1:4]
    assert frame_numbers(recording.calls[0][1]) == [0, 1, 2] * 2


def test_scale_zero_is_the_pipeline_without_it(pipe):
    recording = Recording(tiny_controlnet(pipe.unet.unet))
    args = dict(prompt="a red circle", num_frames=3, num_inference_steps=2, seed=3, progress=False)
    plain = pipe(**args)
    off = pipe(**args, controlnets=[ControlNet(recording, numbered_frames(3), scale=0.0)])
    np.testing.assert_array_equal(off, plain)
    assert not recording.calls


def test_per_frame_text_gives_the_residuals_of_the_same_text_per_video(pipe):
    model = tiny_controlnet(pipe.unet.unet)
    control = ControlNet(model, torch.rand(3, 3, 16, 16))
    timesteps = torch.tensor([999, 500])
    condition = ControlNetCondition(control, timesteps, guided=True, device=torch.device("cpu"))
    x = torch.randn(2, 4, 3, 8, 8)
    text = torch.randn(2, 77, 32)
    frames = torch.arange(3)
    per_video = condition.unet_kwargs(x, timesteps[0], text, frames)
    per_frame = condition.unet_kwargs(x, timesteps[0], text[:, None].expand(2, 3, 77, 32), frames)
    for a, b in zip(per_video["down_block_additional_residuals"], per_frame["down_block_additional_residuals"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    mid = per_video["mid_block_additional_residual"]
    assert mid.shape[0] == 2 * 3 and mid.abs().mean() > 0
    # Guess mode under guidance: the unconditional videos' frames get zeros, the conditional ones residuals.
    guess = ControlNetCondition(ControlNet(model, control.frames, guess_mode=True), timesteps, True, x.device)
    mid = rearrange(guess.unet_kwargs(x, timesteps[1], text, frames)["mid_block_additional_residual"],
                    "(b f) c h w -> b f c h w", f=3)  # fmt: skip
    assert mid[0].abs().max() == 0 and mid[1].abs().mean() > 0


def test_control_frames_from_arrays_and_uint8():
    model = torch.nn.Identity()
    array = np.random.default_rng(0).random((4, 16, 8, 3), dtype=np.float32)
    frames = ControlNet(model, array).frames
    assert frames.shape == (4, 3, 16, 8) and torch.equal(frames.permute(0, 2, 3, 1), torch.from_numpy(array))
    as_bytes = ControlNet(model, torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)).frames
    assert as_bytes.dtype == torch.float32 and torch.all(as_bytes == 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(start=0.5, end=0.5), "need 0 ≤ start < end ≤ 1"),
        (dict(end=1.5), "need 0 ≤ start < end ≤ 1"),
        (dict(scale=float("nan")), "scale must be a finite number"),
        (dict(guess_mode="yes"), "guess_mode must be True or False"),
        (dict(frames=torch.rand(4, 16, 16, 3)), r"must be \(frames, 3, height, width\)"),
        (dict(frames=torch.rand(4, 3, 8, 8) * 2), r"in \[0, 1\]"),
        (dict(model="controlnet.pth"), "must be a diffusers ControlNetModel"),
    ],
)
def test_bad_controlnet_options_are_input_errors(kwargs, message):
    args = dict(model=torch.nn.Identity(), frames=torch.rand(4, 3, 8, 8)) | kwargs
    with pytest.raises(InputError, match=message):
        ControlNet(**args)


def test_a_clip_or_size_or_model_that_does_not_fit_is_an_input_error_before_denoising(pipe):
    model = tiny_controlnet(pipe.unet.unet)
    steps = []
    call = dict(prompt="x", num_frames=4, num_inference_steps=2, progress=False, callback=lambda *a: steps.append(a))
    with pytest.raises(InputError, match="3 control frames for a clip of 4 frames"):
        pipe(**call, controlnets=[ControlNet(model, torch.rand(3, 3, 16, 16))])
    two = [ControlNet(model, torch.rand(4, 3, 16, 16)), ControlNet(model, torch.rand(4, 3, 16, 24))]
    with pytest.raises(InputError, match="ControlNet 2: control frames of 24×16 for an output of 16×16"):
        pipe(**call, controlnets=two)
    sd2 = tiny_controlnet(UNet2DConditionModel.from_config({**pipe.unet.config, "cross_attention_dim": 1024}))
    with pytest.raises(InputError, match=r"cross-attention dimension 1024 \(SD2.x\), but the base UNet has 32"):
        pipe(**call, controlnets=[ControlNet(sd2, torch.rand(4, 3, 16, 16))])
    other_vae = tiny_controlnet(pipe.unet.unet, stages=(16, 32, 96, 256))
    with pytest.raises(InputError, match="downsamples control images 8×, but this base's VAE 2×"):
        pipe(**call, controlnets=[ControlNet(other_vae, torch.rand(4, 3, 16, 16))])
    with pytest.raises(InputError, match="expected an animatediff.pipeline.controlnet.ControlNet"):
        controlnet_conditions([model], pipe, torch.tensor([1]), 4, 16, 16, True)
    assert not steps
