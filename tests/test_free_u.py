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
    assert generate(base_folder, motion, tmp_path / "o.npy", "--freeu", "b1=1.3, b2=1.4, s1=0.9, s2=0.2") == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    call = dict(seed=3, num_frames=4, num_inference_steps=4, progress=False)
    expected = pipe("a fox", "", **call, free_u=FreeU(1.3, 1.4, 0.9, 0.2))
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected[0])
    assert np.abs(pipe("a fox", "", **call) - expected).max() > 0
    entry = {"motion_module": str(motion), "prompt": ["a fox"], "seed": 3, "steps": 4, "L": 4,
             "freeu": {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}}  # fmt: skip
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
