"""The hires fix (`pipeline/hires.py`): diffusers' AnimateDiffPipeline, its frames upscaled, then diffusers'
AnimateDiffVideoToVideoPipeline on them, draw what `hires_fix` draws; and its checks."""

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffVideoToVideoPipeline

from animatediff.errors import InputError
from animatediff.io.video_input import fit_frames
from animatediff.pipeline.hires import HiresFix, hires_fix, sized_controls
from tests.diffusers_reference import diffusers_pipeline

PROMPT = "a red circle moving left"
ARGS = dict(negative_prompt="blurry", num_frames=6, height=16, width=16, num_inference_steps=4, guidance_scale=7.5)


def test_the_second_pass_is_diffusers_video_to_video_on_the_upscaled_frames(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    text2video = diffusers_pipeline(pipe)
    video2video = diffusers_pipeline(pipe, cls=AnimateDiffVideoToVideoPipeline)
    first = text2video(PROMPT, **ARGS, generator=torch.Generator().manual_seed(7), output_type="np").frames
    upscaled = fit_frames(first[0], 32, 32)  # the pipeline's fit of a start video: antialiased bilinear
    args = {k: v for k, v in ARGS.items() if k not in ("num_frames", "height", "width", "num_inference_steps")}
    expected = video2video(
        prompt=PROMPT, video=upscaled, strength=0.5, height=32, width=32, num_inference_steps=6, **args,
        generator=torch.Generator().manual_seed(7), output_type="np",
    ).frames  # fmt: skip

    ours_first = pipe(PROMPT, **{k: v for k, v in ARGS.items() if k != "negative_prompt"}, negative_prompt="blurry",
                      seed=7, progress=False)  # fmt: skip
    np.testing.assert_allclose(ours_first, first, rtol=0, atol=1e-4)
    call = {k: v for k, v in ARGS.items() if k != "negative_prompt"}
    got = hires_fix(pipe, ours_first, HiresFix(2, 0.5, steps=6), PROMPT, "blurry", seed=7, progress=False, **call)
    assert got.shape == (1, 6, 32, 32, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert np.abs(got[0] - upscaled).max() > 1e-2  # really drawn again


@pytest.mark.parametrize(("upscaler", "mode"), [("latent", "bilinear"), ("latent-nearest", "nearest")])
def test_a_latent_upscaler_is_diffusers_video_to_video_from_the_upscaled_latents(make_pipeline, one_thread, upscaler,
                                                                                  mode):  # fmt: skip
    """diffusers' AnimateDiffPipeline's latents (`output_type="latent"`), each frame upscaled by torch's interpolate
    as A1111's latent upscalers do, noised from the seed to the strength's first timestep, then diffusers'
    AnimateDiffVideoToVideoPipeline from those latents, draw what `draw` draws with a latent upscaler."""
    from diffusers.utils.torch_utils import randn_tensor

    from animatediff.pipeline.hires import draw

    pipe = make_pipeline("v2")
    text2video = diffusers_pipeline(pipe)
    video2video = diffusers_pipeline(pipe, cls=AnimateDiffVideoToVideoPipeline)
    first = text2video(PROMPT, **ARGS, generator=torch.Generator().manual_seed(7), output_type="latent").frames
    b, c, f, h, w = first.shape
    upscaled = torch.nn.functional.interpolate(first.transpose(1, 2).flatten(0, 1), size=(2 * h, 2 * w), mode=mode)
    upscaled = upscaled.unflatten(0, (b, f)).transpose(1, 2)  # (b, c, f, 2h, 2w)
    video2video.scheduler.set_timesteps(6)
    t0 = video2video.get_timesteps(6, video2video.scheduler.timesteps, 0.5, "cpu")[0][:1]
    generator = torch.Generator().manual_seed(7)
    noise = randn_tensor((b, f, c, 2 * h, 2 * w), generator=generator)  # diffusers' layout for a video start's noise
    start = video2video.scheduler.add_noise(upscaled.transpose(1, 2), noise, t0).transpose(1, 2)
    args = {k: v for k, v in ARGS.items() if k not in ("num_frames", "height", "width", "num_inference_steps")}
    expected = video2video(
        prompt=PROMPT, latents=start, strength=0.5, height=32, width=32,
        num_inference_steps=6, **args, generator=generator, output_type="np",
    ).frames  # fmt: skip
    call = {k: v for k, v in ARGS.items() if k != "negative_prompt"}
    got = draw(pipe, PROMPT, "blurry", 7, HiresFix(2, 0.5, steps=6, upscaler=upscaler), progress=False, **call)
    assert got.shape == (1, 6, 32, 32, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    pixel = draw(pipe, PROMPT, "blurry", 7, HiresFix(2, 0.5, steps=6), progress=False, **call)
    assert np.abs(got - pixel).max() > 1e-2


def test_each_video_of_a_batch_is_drawn_again_with_its_own_prompt(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    call = {k: v for k, v in ARGS.items() if k != "negative_prompt"}
    prompts = [PROMPT, "a blue square"]
    first = pipe(prompts, "blurry", seed=3, progress=False, **call)
    both = hires_fix(pipe, first, HiresFix(1.5), prompts, "blurry", seed=3, progress=False, **call)
    assert both.shape == (2, 6, 24, 24, 3)
    alone = hires_fix(pipe, first[1:], HiresFix(1.5), "a blue square", "blurry", seed=3, progress=False, **call)
    np.testing.assert_array_equal(both[1], alone[0])


def test_a_first_pass_with_free_init_or_a_video_runs_its_second_pass_without_them(make_pipeline, one_thread):
    from animatediff.sampling import FreeInit

    pipe = make_pipeline("v2")
    call = {k: v for k, v in ARGS.items() if k != "negative_prompt"}
    first = pipe(PROMPT, seed=3, progress=False, **call)
    plain = hires_fix(pipe, first, HiresFix(1.5), PROMPT, seed=3, progress=False, **call)
    extra = dict(free_init=FreeInit(iterations=2), video=first[0], strength=0.7)
    again = hires_fix(pipe, first, HiresFix(1.5), PROMPT, seed=3, progress=False, **call, **extra)
    np.testing.assert_array_equal(plain, again)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(scale=0.5), "hires scale must be a number from 1 to 4, got 0.5"),
        (dict(scale=float("nan")), "hires scale must be a number from 1 to 4"),
        (dict(strength=0), "hires strength must be in (0, 1], got 0"),
        (dict(strength=True), "hires strength must be in (0, 1]"),
        (dict(strength=0.1, steps=5), "hires strength 0.1 leaves no step of 5 to run"),
        (dict(steps=0), "hires steps must be a whole number ≥ 1, got 0"),
        (dict(upscaler="lanczos"), "hires upscaler 'lanczos': choose one of pixel, latent, latent-bicubic"),
    ],
)
def test_bad_settings_are_one_line(kwargs, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HiresFix(**kwargs)


def test_sizes_round_to_the_latent_grid():
    assert HiresFix(1.5).size(512, 768) == (768, 1152)
    assert HiresFix(1.3).size(32, 32) == (40, 40) and HiresFix(1).size(16, 24) == (16, 24)


def test_a_controlnet_steers_the_second_pass_as_diffusers_video_to_video_controlnet(make_pipeline, one_thread):
    """The second pass with a ControlNet is diffusers' AnimateDiffVideoToVideoControlNetPipeline on the upscaled
    frames and the upscaled control frames."""
    from diffusers import AnimateDiffVideoToVideoControlNetPipeline

    from animatediff.pipeline.controlnet import ControlNet
    from tests.controlnet_helpers import tiny_controlnet

    pipe = make_pipeline("v2")
    control = ControlNet(tiny_controlnet(pipe.unet.unet), torch.rand(6, 3, 16, 16, generator=torch.Generator()
                         .manual_seed(8)), scale=0.9, start=0.2)  # fmt: skip
    call = {k: v for k, v in ARGS.items() if k != "negative_prompt"}
    first = pipe(PROMPT, "blurry", seed=7, progress=False, controlnets=[control], **call)
    got = hires_fix(pipe, first, HiresFix(2, 0.6, 8), PROMPT, "blurry", 7, progress=False, controlnets=[control],
                    **call)  # fmt: skip
    ref = diffusers_pipeline(pipe, cls=AnimateDiffVideoToVideoControlNetPipeline, controlnet=control.model)
    upscaled_control = fit_frames(control.frames.permute(0, 2, 3, 1).numpy(), 32, 32)
    expected = ref(
        prompt=PROMPT, negative_prompt="blurry", video=fit_frames(first[0], 32, 32), strength=0.6, height=32,
        width=32, num_inference_steps=8, guidance_scale=7.5, conditioning_frames=list(upscaled_control),
        controlnet_conditioning_scale=0.9, control_guidance_start=0.2, generator=torch.Generator().manual_seed(7),
        output_type="np",
    ).frames  # fmt: skip
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    without = hires_fix(pipe, first, HiresFix(2, 0.6, 8), PROMPT, "blurry", 7, progress=False, **call)
    assert np.abs(got - without).max() > 1e-3  # the ControlNet steered the second pass


def test_keyframe_controlnets_and_sparse_ctrl_take_their_keyframes_upscaled(make_pipeline, one_thread):
    """Their keyframe images are fitted to the second pass's size as the frames are, and they steer it."""
    from animatediff.pipeline.keyframe_controlnet import KeyframeControlNet
    from animatediff.pipeline.sparse_ctrl import SparseCtrl
    from tests.controlnet_helpers import tiny_controlnet
    from tests.sparse_ctrl_helpers import tiny_sparse_ctrl

    pipe = make_pipeline("v3")
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    keyframed = KeyframeControlNet(tiny_controlnet(pipe.unet.unet), {0: images[0], 4: images[1]}, spread=(0.5,))
    sparse = SparseCtrl(tiny_sparse_ctrl(pipe.unet.unet, "rgb"), {0: images[0]})
    call = {k: v for k, v in ARGS.items() if k != "negative_prompt"} | dict(progress=False)
    first = pipe(PROMPT, seed=7, **call)
    plain = hires_fix(pipe, first, HiresFix(1.5, 0.75), PROMPT, None, 7, **call)
    for controls in (dict(controlnets=[keyframed]), dict(sparse_ctrls=[sparse])):
        steered = hires_fix(pipe, first, HiresFix(1.5, 0.75), PROMPT, None, 7, **call, **controls)
        assert steered.shape == (1, 6, 24, 24, 3) and np.abs(steered - plain).max() > 1e-3
    sized = sized_controls(dict(controlnets=[keyframed], sparse_ctrls=[sparse]), (24, 24))
    expected = torch.from_numpy(fit_frames(images.permute(0, 2, 3, 1).numpy(), 24, 24)).permute(0, 3, 1, 2)
    assert torch.equal(sized["controlnets"][0].keyframes[4], expected[1])
    assert torch.equal(sized["sparse_ctrls"][0].keyframes[0], expected[0])
    assert keyframed.keyframes[4].shape == (3, 16, 16)  # the first pass's own are kept
