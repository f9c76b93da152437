"""SDXL's second text encoder reading its own text (`prompt_2`, `negative_prompt_2`, `--prompt-2`): diffusers'
AnimateDiffSDXLPipeline's frames; each defaults to the first encoder's text; one line where it cannot apply."""

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from tests.sdxl_tiny import tiny_sdxl_pipeline
from tests.test_sdxl_pipeline import reference

ARGS = dict(num_frames=4, height=32, width=32, num_inference_steps=3, guidance_scale=7.5)


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return tiny_sdxl_pipeline(tmp_path_factory.mktemp("sdxl"))


@pytest.mark.parametrize(
    ("texts"),
    [
        {"prompt_2": "a blue square moving up", "negative_prompt_2": "dark"},
        {"prompt_2": "a blue square moving up"},  # the second negative prompt: the first's
        {"negative_prompt_2": "dark"},
    ],
)
def test_prompt_2_matches_diffusers(sdxl, one_thread, texts):
    generator = torch.Generator("cpu").manual_seed(5)
    args = dict(ARGS, prompt="a red circle moving left", negative_prompt="blurry", **texts)
    expected = reference(sdxl)(**args, generator=generator, output_type="np").frames
    got = sdxl(**args, seed=5, progress=False)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    plain = sdxl("a red circle moving left", "blurry", **ARGS, seed=5, progress=False)
    assert np.abs(got - plain).max() > 1e-3
    text = "a red circle moving left"
    np.testing.assert_array_equal(sdxl(text, "blurry", **ARGS, seed=5, progress=False, prompt_2=text), plain)


def test_where_prompt_2_cannot_apply(sdxl, make_pipeline):
    with pytest.raises(InputError, match="prompt_2 and negative_prompt_2 are for SDXL's second text encoder"):
        make_pipeline()("a cat", num_frames=2, num_inference_steps=1, progress=False, prompt_2="a dog")
    with pytest.raises(InputError, match="take plain prompts, not a prompt travel"):
        sdxl({0: "a cat", 2: "a dog"}, **ARGS, progress=False, prompt_2="a dog")


def test_a_run_entry_takes_prompt_2(sdxl, one_thread):
    from animatediff.entry_pipeline_args import entry_pipeline_args
    from animatediff.prompt_entries import parse_entry

    raw = {"prompt": ["a red circle"], "n_prompt": ["blurry"], "prompt_2": "a blue square", "n_prompt_2": "dark",
           "motion_module": "m.ckpt", "steps": 3, "guidance_scale": 7.5, "L": 4, "W": 32, "H": 32}  # fmt: skip
    entry = parse_entry(raw, "run.yaml")
    call = entry_pipeline_args(entry, sdxl, 16, None, None, [])
    assert (call["prompt_2"], call["negative_prompt_2"]) == ("a blue square", "dark")
    args = dict(ARGS, seed=2, progress=False)
    direct = sdxl("a red circle", "blurry", **args, prompt_2="a blue square", negative_prompt_2="dark")
    np.testing.assert_array_equal(sdxl("a red circle", "blurry", seed=2, **call)[0], direct[0])
    with pytest.raises(InputError, match="run.yaml: prompt_2 must be a string"):
        parse_entry({**raw, "prompt_2": ["a", "b"]}, "run.yaml")
