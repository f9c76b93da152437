"""FreeNoise in the pipeline and the UNet: the frames diffusers' `enable_free_noise` gives, and plain generation
where FreeNoise has nothing to do."""

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline

from animatediff.cli import main
from animatediff.errors import InputError
from animatediff.formats import save_motion_modules
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.free_noise import FreeNoise
from tests.diffusers_reference import diffusers_pipeline
from tests.tiny import tiny_motion

ARGS = dict(
    prompt="a red circle moving left",
    negative_prompt="blurry",
    height=16,
    width=16,
    num_inference_steps=3,
    guidance_scale=7.5,
)


def _reference(ours: AnimationPipeline, free_noise: FreeNoise) -> AnimateDiffPipeline:
    """diffusers' pipeline on our weights (per-frame motion norm, as the official code), FreeNoise enabled."""
    reference = diffusers_pipeline(ours, motion_adapter=True)
    f = free_noise
    reference.enable_free_noise(f.context_length, f.context_stride, f.weighting, f.noise_type)
    return reference


@pytest.mark.parametrize(
    "num_frames, free_noise",
    [
        (24, FreeNoise(8, 4, "pyramid", "shuffle_context")),
        # A last window snapped back to the clip's end; flat weights, where diffusers' fusion of it is right.
        (26, FreeNoise(8, 4, "flat", "shuffle_context")),
    ],
)
def test_pipeline_matches_diffusers_free_noise(make_pipeline, one_thread, num_frames, free_noise):
    ours = make_pipeline("v2")
    reference = _reference(ours, free_noise)
    generator = torch.Generator("cpu").manual_seed(7)
    expected = reference(**ARGS, num_frames=num_frames, generator=generator, output_type="np").frames
    got = ours(**ARGS, num_frames=num_frames, seed=7, progress=False, free_noise=free_noise)
    assert got.shape == (1, num_frames, 16, 16, 3)
    assert np.abs(np.diff(got, axis=1)).mean() > 1e-3  # frames differ: the motion modules are active
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    plain = ours(**ARGS, num_frames=num_frames, seed=7, progress=False)
    assert np.abs(got - plain).max() > 0.1  # FreeNoise changed the video
    assert ours.unet.free_noise is None  # and is off again after the call


def test_unet_with_per_frame_text_matches_diffusers(make_pipeline, one_thread):
    """Each frame its own text embedding, through FreeNoise's UNet (spatial layers on all frames at once)."""
    ours = make_pipeline("v2")
    free_noise = FreeNoise(8, 4, "delayed_reverse_sawtooth")
    reference = _reference(ours, free_noise).unet
    torch.manual_seed(0)
    x, text = torch.randn(2, 4, 20, 8, 8), torch.randn(2, 20, 77, 32)
    t = torch.tensor(500)
    with torch.no_grad():
        expected = reference(x, t, encoder_hidden_states=text.flatten(0, 1)).sample
        ours.unet.set_free_noise(free_noise.windows)
        got = ours.unet(x, t, text)
        same_text = ours.unet(x, t, text[:, :1].expand(-1, 20, -1, -1))
        ours.unet.set_free_noise(None)
        plain = ours.unet(x, t, text)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    assert (got - same_text)[:, :, 19].abs().max() > 1e-3  # frame 19's own text reached it
    assert (got - plain).abs().max() > 1e-3


def test_prompt_travel_under_free_noise_matches_diffusers(make_pipeline, one_thread):
    """Per-frame text from keyframes ({frame: prompt}, linear), as diffusers' FreeNoise takes a prompt dict."""
    ours = make_pipeline("v2")
    free_noise = FreeNoise(8, 4)
    reference = _reference(ours, free_noise)
    travel = {**ARGS, "prompt": {0: "a red circle", 10: "a blue square on a white background", 20: "a green cross"}}
    generator = torch.Generator("cpu").manual_seed(7)
    expected = reference(**travel, num_frames=24, generator=generator, output_type="np").frames
    got = ours(**travel, num_frames=24, seed=7, progress=False, free_noise=free_noise)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    one_prompt = ours(
        **{**travel, "prompt": "a red circle"}, num_frames=24, seed=7, progress=False, free_noise=free_noise
    )
    assert np.abs(got - one_prompt).max() > 0.05  # the keyframes' text reached their frames


@pytest.mark.parametrize(
    "free_noise",
    [
        FreeNoise(8, 4),
        FreeNoise(16, 2, "flat", "repeat_context"),
        FreeNoise(8, 8, "delayed_reverse_sawtooth", "random"),
    ],
)
def test_a_window_as_long_as_the_clip_is_plain_generation(make_pipeline, one_thread, free_noise):
    pipe = make_pipeline()
    plain = pipe(**ARGS, num_frames=8, seed=3, progress=False)
    np.testing.assert_array_equal(pipe(**ARGS, num_frames=8, seed=3, progress=False, free_noise=free_noise), plain)


def test_clips_longer_than_the_position_encoding(make_pipeline, one_thread):
    pipe = make_pipeline()  # v3: 32 positions
    frames = pipe(**ARGS, num_frames=40, seed=0, progress=False, free_noise=FreeNoise(16, 8))
    assert frames.shape[1] == 40 and np.isfinite(frames).all()
    with pytest.raises(InputError, match="context_length 40: the motion module sees at most 32 frames"):
        pipe(**ARGS, num_frames=40, free_noise=FreeNoise(40))
    with pytest.raises(InputError, match="FreeNoise context_length 40: the motion module sees at most 32"):
        pipe.unet.set_free_noise(FreeNoise(40).windows)


def test_free_noise_replaces_the_context_windows(make_pipeline):
    pipe = make_pipeline()
    with pytest.raises(InputError, match="context_length 16 asks for sliding context windows, which FreeNoise"):
        pipe(**ARGS, num_frames=40, context_length=16, free_noise=FreeNoise(16))
    with pytest.raises(InputError, match="free_noise must be a FreeNoise or None, got dict"):
        pipe(**ARGS, num_frames=8, free_noise={"context_length": 8})


def test_cli_free_noise_is_the_python_api(tmp_path, base_folder, one_thread, capsys):
    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    out = tmp_path / "o.npy"
    options = ["--frames", "20", "--steps", "2", "--seed", "4", "--free-noise", "--context-length", "8"]
    options += ["--context-stride", "6", "--free-noise-weighting", "flat", "--output", str(out)]
    args = ["generate", "--base", str(base_folder), "--motion-module", str(motion), "--quiet", "--prompt", "a fox"]
    assert main([*args, *options]) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    expected = pipe("a fox", "", num_frames=20, num_inference_steps=2, seed=4, progress=False,
                    free_noise=FreeNoise(8, 6, "flat"))[0]  # fmt: skip
    np.testing.assert_array_equal(np.load(out), expected)
    assert main([*args, "--free-noise", "--context-length", "8", "--context-stride", "9", "--output", str(out)]) == 2
    assert "FreeNoise context_stride 9 must be a whole number from 1 to the context length 8" in capsys.readouterr().err
