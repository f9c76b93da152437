"""Keyframe ControlNets (animatediff-cli-prompt-travel's controlnet_map): with an image on every frame and no spread,
diffusers' AnimateDiffControlNetPipeline's frames; the spread weights, wrapped or not; a keyframe's residuals reach
its neighbours (the sum a frame gets, checked against the model run by hand); context windows see keyframes outside
them; frames past the clip and the wrong size."""

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from animatediff.pipeline.keyframe_controlnet import KeyframeControlNet, KeyframeControlNetCondition, spread_weights
from tests.controlnet_helpers import tiny_controlnet
from tests.test_controlnet_parity import ARGS, check, control_frames, reference


@pytest.fixture
def pipe(make_pipeline, one_thread):
    return make_pipeline("v2")


def test_an_image_on_every_frame_without_spread_matches_diffusers(pipe):
    model, frames = tiny_controlnet(pipe.unet.unet), control_frames(0)
    control = KeyframeControlNet(model, dict(enumerate(frames)), scale=0.8, end=0.75)
    expected = reference(pipe, [control])(
        **ARGS, num_inference_steps=4, guidance_scale=7.5, conditioning_frames=list(frames),
        controlnet_conditioning_scale=0.8, control_guidance_end=0.75,
        generator=torch.Generator("cpu").manual_seed(7), output_type="np",
    ).frames  # fmt: skip
    got = pipe(**ARGS, num_inference_steps=4, guidance_scale=7.5, seed=7, progress=False, controlnets=[control])
    plain = pipe(**ARGS, num_inference_steps=4, guidance_scale=7.5, seed=7, progress=False)
    check(got, expected, plain)


def test_spread_weights():
    # keyframe 0 and 5 of 6, spread (0.5, 0.25): wrapped, frame 5's neighbours include 0 and 1
    looped = spread_weights([0, 5], range(6), (0.5, 0.25), 6, loop=True)
    assert looped.tolist() == [[1, 0.5], [0.5, 0.25], [0.25, 0], [0, 0.25], [0.25, 0.5], [0.5, 1]]
    flat = spread_weights([0, 5], range(6), (0.5, 0.25), 6, loop=False)
    assert flat.tolist() == [[1, 0], [0.5, 0], [0.25, 0], [0, 0.25], [0, 0.5], [0, 1]]
    assert spread_weights([1], [3, 1], (), 4, loop=True).tolist() == [[0], [1]]  # a window's frames, in its order
    # a wrapped clip shorter than the spread: each frame keeps the first offset reaching it, from -2 up
    assert spread_weights([0], range(2), (0.5, 0.25), 2, loop=True).tolist() == [[0.25], [0.5]]
    assert spread_weights([0], range(8), (0.5, 0.4, 0.3, 0.2, 0.1), 8, loop=True)[3].item() == pytest.approx(0.1)


def test_a_frame_gets_its_keyframes_residuals_weighted(pipe):
    """The residuals a window's frames get: each keyframe's, computed by the model on its own frame's latents and
    text, weighted by the spread."""
    model = tiny_controlnet(pipe.unet.unet)
    images = control_frames(1, num_frames=2)
    control = KeyframeControlNet(model, {0: images[0], 4: images[1]}, scale=0.9, spread=(0.5,), loop=False)
    timesteps = torch.tensor([900, 500])
    condition = KeyframeControlNetCondition(control, timesteps, 6, torch.device("cpu"))
    x, text = torch.randn(2, 4, 6, 8, 8), torch.randn(2, 6, 77, 32)  # a guided batch, per-frame text
    t = timesteps[1]
    seen = condition.seeing_clip(lambda x, t, text, frames: condition.unet_kwargs(x[:, :, 3:6], t, text, frames[3:6]))
    got = seen(x, t, text, torch.arange(6))
    own = [model(x[:, :, k], t, encoder_hidden_states=text[:, k], controlnet_cond=images[i][None].repeat(2, 1, 1, 1),
                 conditioning_scale=0.9, return_dict=False) for i, k in enumerate((0, 4))]  # fmt: skip
    for level, residual in enumerate(got["down_block_additional_residuals"]):
        per_frame = residual.unflatten(0, (2, 3))  # frames 3, 4, 5 of each video
        torch.testing.assert_close(per_frame[:, 0], 0.5 * own[1][0][level], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(per_frame[:, 1], own[1][0][level], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(per_frame[:, 2], 0.5 * own[1][0][level], rtol=1e-5, atol=1e-5)
    assert condition._clip is None  # nothing kept after the prediction
    mid = got["mid_block_additional_residual"].unflatten(0, (2, 3))
    torch.testing.assert_close(mid[:, 1], own[1][1], rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="must be wrapped by its seeing_clip"):
        condition.unet_kwargs(x[:, :, 3:6], t, text[:, 3:6], torch.arange(3, 6))


def test_windows_see_keyframes_outside_them(pipe):
    model = tiny_controlnet(pipe.unet.unet)
    control = KeyframeControlNet(model, {0: control_frames(2, 1)[0]}, spread=(0.6, 0.4, 0.2), loop=True)
    run = dict(ARGS, num_frames=8, num_inference_steps=3, seed=3, progress=False)
    plain = pipe(**run, context_length=4, context_overlap=2)
    steered = pipe(**run, context_length=4, context_overlap=2, controlnets=[control])
    changed = np.abs(steered - plain).mean(axis=(0, 2, 3, 4))
    assert (changed > 1e-4).all()  # every window holds a frame within 3 of frame 0 (wrapped: 5, 6, 7)
    whole = pipe(**run, controlnets=[control])
    assert whole.shape == steered.shape and np.isfinite(whole).all()


def test_what_is_refused_and_what_is_left_out(pipe):
    model = tiny_controlnet(pipe.unet.unet)
    with pytest.raises(InputError, match="no keyframe images"):
        KeyframeControlNet(model, {})
    with pytest.raises(InputError, match="spread must be a list of numbers"):
        KeyframeControlNet(model, {0: control_frames(0, 1)[0]}, spread=("high",))
    with pytest.raises(InputError, match="control frames of 32×32 for an output of 16×16"):
        pipe(**ARGS, num_inference_steps=1, progress=False,
             controlnets=[KeyframeControlNet(model, {0: control_frames(0, 1, size=32)[0]})])  # fmt: skip
    with pytest.raises(InputError, match="model must be a diffusers ControlNetModel"):
        KeyframeControlNet("openpose.pth", {0: control_frames(0, 1)[0]})
    mixed = KeyframeControlNet(model, {0: control_frames(0, 1)[0], 3: control_frames(0, 1, size=32)[0]})
    with pytest.raises(InputError, match="control frames of 32×32 for an output of 16×16"):
        pipe(**ARGS, num_inference_steps=1, progress=False, controlnets=[mixed])
    late = KeyframeControlNet(model, {40: control_frames(0, 1)[0]})  # past the last frame: not used
    plain = pipe(**ARGS, num_inference_steps=2, seed=1, progress=False)
    np.testing.assert_array_equal(
        pipe(**ARGS, num_inference_steps=2, seed=1, progress=False, controlnets=[late]), plain
    )


def test_composes_with_pag_free_noise_and_prompt_travel(pipe):
    from animatediff.pipeline import PAG
    from animatediff.pipeline.free_noise import FreeNoise

    model = tiny_controlnet(pipe.unet.unet)
    control = KeyframeControlNet(model, {0: control_frames(3, 1)[0], 7: control_frames(4, 1)[0]}, spread=(0.5,))
    run = dict(ARGS, prompt={0: "a red circle", 7: "a blue square"}, num_frames=8, num_inference_steps=2, seed=2,
               progress=False)  # fmt: skip
    for extra in ({"pag": PAG(2.0)}, {"free_noise": FreeNoise(context_length=4, context_stride=2)}):
        steered = pipe(**run, **extra, controlnets=[control])
        assert np.isfinite(steered).all() and np.abs(steered - pipe(**run, **extra)).max() > 1e-3
    off = KeyframeControlNet(model, control.keyframes, scale=0.0, spread=(0.5,))
    np.testing.assert_array_equal(pipe(**run, controlnets=[off]), pipe(**run))
