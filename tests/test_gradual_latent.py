"""The gradual latent hires fix (`sampling/gradual_latent.py`, `pipeline/gradual_latent.py`): prompt-travel's loop
over diffusers' parts, the loop it becomes at one scale, the schedulers that keep a history, and bad input."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from animatediff.errors import InputError
from animatediff.pipeline.controlnet import ControlNet
from animatediff.pipeline.free_noise import FreeNoise
from animatediff.pipeline.keyframe_controlnet import KeyframeControlNet
from animatediff.pipeline.pag import PAG
from animatediff.pipeline.regions import Region
from animatediff.pipeline.sparse_ctrl import SparseCtrl
from animatediff.sampling import FreeInit
from animatediff.sampling.gradual_latent import GradualLatent, latent_size, resized
from animatediff.sampling.schedulers import make_scheduler
from tests.controlnet_helpers import tiny_controlnet
from tests.diffusers_reference import diffusers_pipeline
from tests.sparse_ctrl_helpers import tiny_sparse_ctrl

PROMPT = "a red ball moving right"
ARGS = dict(num_frames=4, height=16, width=16, num_inference_steps=6, progress=False)


def transcribed_resize(ten, size, sharpen=False):  # noqa: ANN001, ANN201
    """prompt-travel's `resize_tensor` and `unsharp_mask`, written out: bicubic per frame, a 3 × 3 kernel on each
    latent channel (an identity over channels)."""
    b, c, f = ten.shape[:3]
    frames = ten.permute(0, 2, 1, 3, 4).reshape(b * f, c, *ten.shape[-2:])
    frames = F.interpolate(frames.float(), size=size, mode="bicubic", align_corners=False)
    if sharpen:
        k = 0.05
        kernel = torch.tensor([[0, -k, 0], [-k, 1 + 4 * k, -k], [0, -k, 0]])
        frames = F.conv2d(frames, torch.eye(c)[..., None, None] * kernel[None, None], padding=1)
    return frames.reshape(b, f, c, *size).permute(0, 2, 1, 3, 4)


@torch.no_grad()
def prompt_travel_gradual(ref, latents, scales, reverse, adds, guidance, control=None, kept=None):  # noqa: ANN001, ANN201
    """prompt-travel's gradual latent loop over diffusers' own parts (its `gradual_latent_size`, the resize before
    the changing step, `_step_index` moved back and `add_noise` repeated after it), decoded by diffusers. Its start
    noise is `latents`, pure noise; DDIM counts no steps, so only Euler's index moves back. `control`: (a diffusers
    ControlNetModel, control images (f, 3, H, W), scale), its images resized bicubic to the latents' size times the
    VAE's 2, as prompt-travel's `cont_var_img`, and its residuals given to the UNet as diffusers' pipeline does.
    `kept`: (the start, noised at the clip's size; the video's clean latents; where it is drawn anew, (f, h, w)) for
    its `is_init_img`: after each step the video noised to the next step's level (clean after the last) and the mask
    both resized to the latents, bicubic, and pasted where the mask is black; its noise is then `latents`."""
    cond, uncond = ref.encode_prompt(PROMPT, latents.device, 1, True, "blurry")
    text = torch.cat([uncond, cond]).repeat_interleave(latents.shape[2], dim=0)
    timesteps = ref.scheduler.timesteps
    height, width = latents.shape[-2:]

    def size(progress):  # noqa: ANN001, ANN202
        ratio = 0.5
        for key, value in scales.items():
            if key > progress:
                break
            ratio = value
        return int(height * ratio) // 2 * 2, int(width * ratio) // 2 * 2  # the tiny UNet downsamples by 2

    noise = latents  # pure noise, as diffusers' pipelines take `latents` and scale them
    start = latents * ref.scheduler.init_noise_sigma if kept is None else kept[0]
    x = transcribed_resize(start, size(0))
    previous, i, real_i = size(0), 0, 0
    while i < len(timesteps):
        t = timesteps[i]
        current = size((real_i + 1) / len(timesteps))
        model_input = ref.scheduler.scale_model_input(torch.cat([x, x]), t)
        residuals = {}
        if control is not None:
            model, images, scale = control
            images = F.interpolate(images, size=(x.shape[-2] * 2, x.shape[-1] * 2), mode="bicubic", align_corners=False)
            sample = model_input.permute(0, 2, 1, 3, 4).flatten(0, 1)
            down, mid = model(sample, t, encoder_hidden_states=text, controlnet_cond=torch.cat([images, images]),
                              conditioning_scale=scale, return_dict=False)  # fmt: skip
            residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        eps_u, eps_c = ref.unet(model_input, t, text, **residuals).sample.chunk(2)
        eps = eps_u + guidance * (eps_c - eps_u)
        if previous != current:
            eps, x = transcribed_resize(eps, current, True), transcribed_resize(x, current, True)
        x = ref.scheduler.step(eps, t, x).prev_sample
        if kept is not None:
            _, clean, drawn = kept
            init = ref.scheduler.add_noise(clean, noise, timesteps[i + 1 : i + 2]) if i + 1 < len(timesteps) else clean
            mask = transcribed_resize(drawn[None, None], current)
            x = x * mask + transcribed_resize(init, current) * (1 - mask)
        i += 1
        real_i = max(i, real_i)
        if previous != current:
            back = min(i, reverse)
            if hasattr(ref.scheduler, "_step_index"):
                ref.scheduler._step_index -= back
            for count in range(i, i + adds):
                later = timesteps[min(count, len(timesteps) - 1)]
                x = ref.scheduler.add_noise(x, transcribed_resize(noise, current), torch.tensor([later]))
            i -= back
        previous = current
    return ref.video_processor.postprocess_video(ref.decode_latents(x, 16), output_type="np")


@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_frames_equal_prompt_travels_gradual_loop_over_diffusers_parts(make_pipeline, one_thread, scheduler):
    pipe = make_pipeline("v2")
    pipe.scheduler = make_scheduler(scheduler)
    ref = diffusers_pipeline(pipe)
    latents = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    gradual = GradualLatent({0: 0.5, 0.5: 1.0}, reverse_steps=2, noise_add_count=2)
    got = pipe(PROMPT, negative_prompt="blurry", latents=latents, gradual_latent=gradual, guidance_scale=7.5, **ARGS)
    ref.scheduler.set_timesteps(6)
    expected = prompt_travel_gradual(ref, latents, {0: 0.5, 0.5: 1.0}, 2, 2, 7.5)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert got.shape == (1, 4, 16, 16, 3)
    plain = pipe(PROMPT, negative_prompt="blurry", latents=latents, guidance_scale=7.5, **ARGS)
    assert np.abs(got - plain).max() > 1e-2


def test_a_controlnet_steers_with_its_images_resized_as_prompt_travel_resizes_them(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    ref = diffusers_pipeline(pipe)
    model = tiny_controlnet(pipe.unet.unet)
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    latents = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    gradual = GradualLatent({0: 0.5, 0.5: 1.0}, reverse_steps=2, noise_add_count=2)
    controlnets = [ControlNet(model, images, scale=0.8)]
    got = pipe(PROMPT, negative_prompt="blurry", latents=latents, gradual_latent=gradual, guidance_scale=7.5,
               controlnets=controlnets, **ARGS)  # fmt: skip
    ref.scheduler.set_timesteps(6)
    expected = prompt_travel_gradual(ref, latents, {0: 0.5, 0.5: 1.0}, 2, 2, 7.5, (model, images, 0.8))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    without = pipe(PROMPT, negative_prompt="blurry", latents=latents, gradual_latent=gradual, guidance_scale=7.5,
                   **ARGS)  # fmt: skip
    assert np.abs(got - without).max() > 1e-2
    keyframed = [KeyframeControlNet(model, {0: images[0]}, scale=0.8, spread=[0.5])]  # prompt-travel's controlnet_map
    drawn = pipe(PROMPT, seed=1, gradual_latent=gradual, controlnets=keyframed, **ARGS)
    unsteered = pipe(PROMPT, seed=1, gradual_latent=gradual, **ARGS)
    assert drawn.shape == got.shape and np.abs(drawn - unsteered).max() > 1e-3


def test_video_inpainting_puts_the_video_back_resized_as_prompt_travel_keeps_its_init_image(
    make_pipeline, one_thread, monkeypatch
):
    """The start (the video's clean latents noised) is caught where the pipeline noises it; the loop after it is
    prompt-travel's with an `is_init_img` background outside the mask."""
    pipe = make_pipeline("v2")
    ref = diffusers_pipeline(pipe)
    video = np.random.default_rng(0).random((4, 16, 16, 3)).astype(np.float32)
    mask = np.zeros((16, 16))
    mask[:, :8] = 1  # the left half drawn anew
    caught, add_noise = [], pipe.scheduler.add_noise

    def catch(x, noise, t):  # noqa: ANN001, ANN202
        out = add_noise(x, noise, t)
        caught.append((out, x, noise))
        return out

    monkeypatch.setattr(pipe.scheduler, "add_noise", catch)
    gradual = GradualLatent({0: 0.5, 0.5: 1.0}, reverse_steps=2, noise_add_count=2)
    got = pipe(PROMPT, negative_prompt="blurry", video=video, strength=1.0, video_mask=mask, seed=1,
               gradual_latent=gradual, guidance_scale=7.5, **ARGS)  # fmt: skip
    monkeypatch.undo()
    start, clean, noise = (v.permute(0, 2, 1, 3, 4) for v in caught[0])  # noised as (b, f, c, h, w), as diffusers'
    drawn = torch.zeros(4, 8, 8)
    drawn[..., :4] = 1
    ref.scheduler.set_timesteps(6)
    expected = prompt_travel_gradual(ref, noise, {0: 0.5, 0.5: 1.0}, 2, 2, 7.5, kept=(start, clean, drawn))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    unmasked = pipe(PROMPT, negative_prompt="blurry", video=video, strength=1.0, seed=1, gradual_latent=gradual,
                    guidance_scale=7.5, **ARGS)  # fmt: skip
    assert np.abs(got - unmasked)[:, :, 8:].max() > 1e-2  # the right half kept


def test_a_region_everywhere_under_the_gradual_fix_is_its_prompt_alone(make_pipeline, one_thread):
    """The weights resized to the smaller latents stay whole; nowhere, the background's."""
    pipe = make_pipeline("v2")
    args = dict(ARGS, seed=1, gradual_latent=GradualLatent({0: 0.5, 0.5: 1.0}, 1, 1))
    alone = pipe("a blue square", **args)
    np.testing.assert_allclose(
        pipe(PROMPT, regions=[Region("a blue square", np.ones((8, 8)))], **args), alone, atol=1e-5
    )
    assert np.abs(pipe(PROMPT, **args) - alone).max() > 1e-3


@pytest.mark.parametrize("kind", ["rgb", "scribble"])
def test_sparse_ctrl_steers_with_its_condition_resized(make_pipeline, one_thread, kind):
    """A latent condition (RGB) and an image one (scribble) both fit the smaller latents."""
    pipe = make_pipeline("v3")
    control = SparseCtrl(tiny_sparse_ctrl(pipe.unet.unet, kind), {0: torch.rand(3, 16, 16)})
    args = dict(ARGS, seed=3, gradual_latent=GradualLatent({0: 0.5, 0.5: 1.0}, 1, 1))
    steered = pipe(PROMPT, sparse_ctrls=[control], **args)
    assert steered.shape == (1, 4, 16, 16, 3) and np.abs(steered - pipe(PROMPT, **args)).max() > 1e-3


def test_it_goes_with_windows_prompt_travel_free_noise_and_pag(make_pipeline, one_thread):
    """What works on latents of any size runs with it and still acts: prompt travel changes the frames, and so does
    each of the others on top of it."""
    pipe = make_pipeline("v2")
    args = dict(ARGS, num_frames=8, seed=4, gradual_latent=GradualLatent({0: 0.5, 0.5: 1.0}, 1, 1))
    travel = {0: PROMPT, 6: "a blue square moving up"}
    travelled = pipe(travel, **args)
    assert np.abs(travelled - pipe(PROMPT, **args)).max() > 1e-3
    for extra in ({"context_length": 4, "context_overlap": 2}, {"free_noise": FreeNoise(4, 2)}, {"pag": PAG(2.0)}):
        got = pipe(travel, **args, **extra)
        assert got.shape == travelled.shape and np.isfinite(got).all(), extra
        assert np.abs(got - travelled).max() > 1e-3, extra


def test_one_scale_of_one_is_the_plain_loop(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    plain = pipe(PROMPT, seed=2, **ARGS)
    assert np.array_equal(pipe(PROMPT, seed=2, gradual_latent=GradualLatent({0: 1.0}), **ARGS), plain)


@pytest.mark.parametrize("scheduler", ["dpm++-2m", "unipc", "heun", "dpm++-sde", "pndm"])
def test_schedulers_with_a_history_restart_it_at_the_new_size(make_pipeline, one_thread, scheduler):
    """Their history of the smaller size is forgotten (prompt-travel's loop cannot step them past the change); a
    second-order scheduler goes back whole steps. The clip ends at its size, finite, and differs from the plain."""
    pipe = make_pipeline("v2")
    pipe.scheduler = make_scheduler(scheduler)
    args = dict(ARGS, num_inference_steps=4, seed=5)
    got = pipe(PROMPT, gradual_latent=GradualLatent({0: 0.5, 0.5: 1.0}, 1, 1), **args)
    assert got.shape == (1, 4, 16, 16, 3) and np.isfinite(got).all()
    assert np.abs(got - pipe(PROMPT, **args)).max() > 1e-3


def test_a_video_start_grows_from_its_own_noise(make_pipeline, one_thread):
    """And the steps run are the run's and those gone back over, as `steps_again` counts them for progress."""
    pipe = make_pipeline("v2")
    video = np.random.default_rng(0).random((4, 16, 16, 3)).astype(np.float32)
    gradual = GradualLatent({0: 0.5, 0.5: 1.0}, 1, 1)
    steps = []
    record = lambda i, *_: steps.append(i)  # noqa: E731
    got = pipe(PROMPT, video=video, strength=0.8, seed=1, gradual_latent=gradual, callback=record, **ARGS)
    assert got.shape == (1, 4, 16, 16, 3)
    assert steps == [0, 1, 1, 2, 3] and len(steps) == 4 + gradual.steps_again(4)  # 4 of 6 steps at strength 0.8
    assert np.abs(got - pipe(PROMPT, video=video, strength=0.8, seed=1, **ARGS)).max() > 1e-3


def test_resizing_keeps_a_flat_latent_flat_inside_and_sizes_round_down():
    flat = torch.full((1, 4, 2, 8, 8), 0.5)
    assert torch.allclose(resized(flat, (4, 4)), torch.full((1, 4, 2, 4, 4), 0.5))
    sharpened = resized(flat, (16, 16), sharpen=True)
    assert torch.allclose(sharpened[..., 1:-1, 1:-1], torch.full((1, 4, 2, 14, 14), 0.5), atol=1e-6)
    assert latent_size((64, 96), 0.5, 8) == (32, 48) and latent_size((60, 60), 0.5, 8) == (24, 24)
    assert GradualLatent({"0": 0.25, "0.3": 0.5, "0.7": 1}).scale_at(0.5) == 0.5
    assert (
        GradualLatent({0: 0.5, 0.7: 1}).steps_again(25) == 5 and GradualLatent({0: 0.5, 0.7: 1}, 9).steps_again(4) == 3
    )


@pytest.mark.parametrize(
    ("scales", "message"),
    [
        ({0.2: 0.5, 0.7: 1.0}, "need a scale at 0"),
        ({0: 0.5}, "last gradual latent scale must be 1"),
        ({0: 0.5, 1.2: 1.0}, "must be in [0, 1)"),
        ({0: 0, 0.5: 1}, "must be in (0, 1]"),
        ({0: "half", 0.5: 1}, "is not a number"),
    ],
)
def test_bad_scales_are_one_line(scales, message):
    with pytest.raises(InputError, match=re.escape(message)):
        GradualLatent(scales)


def test_what_it_cannot_follow_is_one_line_before_anything_runs(make_pipeline):
    pipe = make_pipeline("v2")
    with pytest.raises(InputError, match="leaves no latents"):
        pipe(PROMPT, gradual_latent=GradualLatent({0: 0.1, 0.5: 1.0}), **ARGS)
    with pytest.raises(InputError, match="FreeInit cannot follow"):
        pipe(PROMPT, free_init=FreeInit(iterations=2), gradual_latent=GradualLatent(), **ARGS)
    with pytest.raises(InputError, match="reverse_steps must be a whole number"):
        GradualLatent(reverse_steps=-1)
