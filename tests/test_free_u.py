"""FreeU (`pipeline/free_u.py`): the frames of diffusers' AnimateDiffPipeline with `enable_freeu`, off again after
the call, through the CLI and a run entry, and bad input."""

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from animatediff.pipeline import FreeU
from animatediff.pipeline.free_u import parse_free_u
from tests.diffusers_reference import diffusers_pipeline

ARGS = dict(prompt="a red circle moving left", negative_prompt="blurry", num_frames=6, height=16, width=16,
            num_inference_steps=3, guidance_scale=7.5)  # fmt: skip
SD15 = FreeU(b1=1.5, b2=1.6, s1=0.9, s2=0.2)  # diffusers' values for SD1.5


def test_frames_equal_diffusers_enable_freeu_and_it_is_off_after_the_call(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    latents = torch.randn(1, 4, 6, 8, 8, generator=torch.Generator().manual_seed(4))
    got = pipe(**ARGS, latents=latents, progress=False, free_u=SD15)
    reference = diffusers_pipeline(pipe)
    reference.enable_freeu(s1=0.9, s2=0.2, b1=1.5, b2=1.6)
    expected = reference(**ARGS, latents=latents, output_type="np").frames
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    plain = pipe(**ARGS, latents=latents, progress=False)
    assert np.abs(got - plain).max() > 1e-3
    assert all(getattr(block, "b1", None) is None for block in pipe.unet.unet.up_blocks)  # off again
    reference.disable_freeu()
    np.testing.assert_allclose(plain, reference(**ARGS, latents=latents, output_type="np").frames, rtol=0, atol=1e-4)


def test_the_cli_and_a_run_entry_draw_what_the_library_draws(tmp_path, base_folder, one_thread):
    import yaml

    from animatediff.formats import save_motion_modules
    from animatediff.model_cache import ModelCache
    from animatediff.pipeline import AnimationPipeline
    from animatediff.prompt_config import run_prompt_config
    from tests.cli_helpers import assert_run_drew, generate
    from tests.tiny import tiny_motion

    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    freeu = "b1=1.3, b2=1.4, s1=0.9, s2=0.2, form=comfy-v2"
    assert generate(base_folder, motion, tmp_path / "o.npy", "--freeu", freeu) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    call = dict(seed=3, num_frames=4, num_inference_steps=4, progress=False)
    expected = pipe("a fox", "", **call, free_u=FreeU(1.3, 1.4, 0.9, 0.2, "comfy-v2"))
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected[0])
    assert np.abs(pipe("a fox", "", **call) - expected).max() > 0
    entry = {"motion_module": str(motion), "prompt": ["a fox"], "seed": 3, "steps": 4, "L": 4,
             "freeu": {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2, "form": "comfy-v2"}}  # fmt: skip
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump([entry]))
    run_prompt_config(tmp_path / "entry.yaml", base_folder, tmp_path / "runs", ModelCache(), progress=False)
    assert_run_drew(tmp_path / "runs", expected[0], tmp_path)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("b1=1.5,b2=1.6,s1=0.9", "give b1, b2, s1 and s2"),
        ("1.5,1.6,0.9,0.2", "give b1=…,b2=…,s1=…,s2=…"),
        ("b1=1.5,b2=x,s1=0.9,s2=0.2", "each factor must be a number"),
        ({"b1": 1.5, "b2": 1.6, "s1": 0.9, "s2": -1}, "FreeU s2 -1 must be a number ≥ 0"),
        ([1.5, 1.6, 0.9, 0.2], "give b1, b2, s1 and s2"),
        ("b1=1.5,b2=1.6,s1=0.9,s2=0.2,form=v2", "FreeU form 'v2': choose one of diffusers, comfy, comfy-v2"),
        ({"b1": 1.5, "b2": 1.6, "s1": 0.9, "s2": 0.2, "b3": 1}, "give b1, b2, s1 and s2"),
    ],
)
def test_bad_factors_are_one_line(spec, message):
    with pytest.raises(InputError, match=message):
        parse_free_u(spec)


def test_bad_input_is_one_line_from_the_library_and_before_loading_from_the_cli(
    make_pipeline, tmp_path, capsys, monkeypatch
):
    from tests.cli_helpers import generate_error

    with pytest.raises(InputError, match=r"free_u takes a FreeU\(b1, b2, s1, s2\)"):
        make_pipeline("v2")("a cat", num_frames=4, height=16, width=16, num_inference_steps=1, progress=False,
                            free_u=(1.5, 1.6, 0.9, 0.2))  # fmt: skip
    assert "--freeu 'b1=2': give b1, b2, s1 and s2" in generate_error(tmp_path, capsys, monkeypatch, "--freeu", "b1=2")


def _joins(free_u: FreeU, channels: tuple[int, ...]) -> tuple[list[tuple], torch.Tensor, torch.Tensor]:
    """Each skip join FreeU touches in a tiny UNet of `channels` (its backbone's and skip's widths, b, s, V2 or not),
    the UNet's prediction with it and without."""
    from types import SimpleNamespace
    from unittest import mock

    from animatediff.pipeline import free_u as module
    from tests.tiny import tiny_unet

    unet = tiny_unet(channels=channels)
    joins, join = [], module.free_u_join

    def recorded(h, skip, b, s, v2=False):
        joins.append((h.shape[1], skip.shape[1], b, s, v2))
        return join(h, skip, b, s, v2)

    x, e = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0)), torch.randn(2, 5, 32)
    with torch.no_grad():
        plain = unet(x, 10, e).sample
        with mock.patch.object(module, "free_u_join", recorded), module.free_u_on(SimpleNamespace(unet=unet), free_u):
            got = unet(x, 10, e).sample
        assert torch.equal(unet(x, 10, e).sample, plain)  # off again after
    return joins, got, plain


@pytest.mark.parametrize("form", ["comfy", "comfy-v2"])
def test_comfy_forms_touch_the_joins_whose_backbone_is_4_or_2_times_the_first_width(form, one_thread):
    """SD1.5's shape at a tenth of its widths: 128 (4 × 32) backbones take b1, s1 (up blocks 0 and 1 and up block 2's
    first join), 64 (2 × 32) take b2, s2 (up block 2's other joins and up block 3's first), as ComfyUI's nodes."""
    joins, got, plain = _joins(FreeU(1.3, 1.4, 0.9, 0.2, form), (32, 64, 128, 128))
    first, second = (1.3, 0.9, form == "comfy-v2"), (1.4, 0.2, form == "comfy-v2")
    skips = [128, 128, 128, 128, 128, 64, 64, 64, 32, 32]  # up block 1's last skip and up block 2's come from 64 wide
    assert joins == [(128, s, *first) for s in skips[:7]] + [(64, s, *second) for s in skips[7:]]
    assert (got - plain).abs().max() > 1e-2
    _, unchanged, plain = _joins(FreeU(1, 1, 1, 1, form), (32, 64, 128, 128))
    torch.testing.assert_close(unchanged, plain, rtol=0, atol=1e-5)  # factors of 1 change nothing


def test_a_join_is_comfyuis_formula_each_image_normalised_on_its_own():
    from animatediff.pipeline.free_u import free_u_join

    h, skip = torch.randn(3, 8, 6, 6, dtype=torch.float64), torch.randn(3, 4, 6, 6, dtype=torch.float64)
    got_h, got_skip = free_u_join(h.clone(), skip, 1.4, 0.2, v2=True)
    mean = h.numpy().mean(axis=1, keepdims=True)
    low, high = mean.min(axis=(2, 3), keepdims=True), mean.max(axis=(2, 3), keepdims=True)
    expected = h.numpy().copy()
    expected[:, :4] *= 1 + 0.4 * (mean - low) / (high - low)
    np.testing.assert_allclose(got_h.numpy(), expected, rtol=1e-12)
    spectrum = np.fft.fftshift(np.fft.fft2(skip.numpy()), axes=(-2, -1))
    spectrum[..., 2:4, 2:4] *= 0.2  # the 2 × 2 lowest frequencies around the centre, as FreeU's threshold 1
    expected = np.fft.ifft2(np.fft.ifftshift(spectrum, axes=(-2, -1))).real  # diffusers filters in float32
    np.testing.assert_allclose(got_skip.numpy(), expected, rtol=0, atol=1e-6)
    got_h, _ = free_u_join(h.clone(), skip, 1.4, 0.2)
    np.testing.assert_allclose(got_h[:, :4].numpy(), 1.4 * h[:, :4].numpy())
    np.testing.assert_array_equal(got_h[:, 4:].numpy(), h[:, 4:].numpy())


def test_the_three_forms_draw_three_clips(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    latents = torch.randn(1, 4, 6, 8, 8, generator=torch.Generator().manual_seed(4))
    frames = {form: pipe(**ARGS, latents=latents, progress=False, free_u=FreeU(1.5, 1.6, 0.9, 0.2, form))
              for form in ("diffusers", "comfy", "comfy-v2")}  # fmt: skip
    assert np.isfinite(frames["comfy-v2"]).all()
    assert min(np.abs(a - b).max() for a in frames.values() for b in frames.values() if a is not b) > 1e-3
    assert parse_free_u("b1=1.3,b2=1.4,s1=0.9,s2=0.2,form=comfy-v2") == FreeU(1.3, 1.4, 0.9, 0.2, "comfy-v2")
    assert parse_free_u({"b1": 1, "b2": 1, "s1": 1, "s2": 1}).form == "diffusers"
