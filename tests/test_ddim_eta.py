"""DDIM's eta (A1111's "Eta for DDIM"): the frames diffusers' AnimateDiffPipeline draws with `eta` (its step noise
from the call's generator, after the start's draw), 0 as before, and the setting from the command line and run
entries, refused in one line for another scheduler or outside [0, 1]."""

import re

import numpy as np
import pytest
import torch
import yaml

from animatediff.cli import main
from animatediff.errors import InputError
from animatediff.formats import save_motion_modules
from animatediff.prompt_config import load_prompt_config
from animatediff.sampling import make_scheduler
from animatediff.sampling.presets import resolve_sampling
from tests.diffusers_reference import diffusers_pipeline
from tests.tiny import tiny_motion

ARGS = dict(prompt="a red circle", num_frames=4, height=16, width=16, num_inference_steps=4, guidance_scale=2.0)


@pytest.mark.parametrize("eta", [0.4, 1.0])
def test_ddim_eta_draws_diffusers_frames(make_pipeline, one_thread, eta):
    pipe = make_pipeline("v2")
    pipe.scheduler = make_scheduler("ddim", eta=eta)
    reference = diffusers_pipeline(pipe, make_scheduler("ddim"))
    expected = reference(**ARGS, eta=eta, generator=torch.Generator("cpu").manual_seed(7), output_type="np").frames
    got = pipe(**ARGS, seed=7, progress=False)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    pipe.scheduler = make_scheduler("ddim")
    plain = pipe(**ARGS, seed=7, progress=False)
    assert np.abs(got - plain).mean() > 1e-3  # the step noise changes the frames
    pipe.scheduler = make_scheduler("ddim", eta=0.0)
    np.testing.assert_array_equal(pipe(**ARGS, seed=7, progress=False), plain)  # 0: deterministic, as before


def test_bad_etas_are_one_line():
    with pytest.raises(InputError, match=re.escape("DDIM eta must be a number in [0, 1], got 1.5")):
        make_scheduler("ddim", eta=1.5)
    with pytest.raises(InputError, match="eta is the ddim scheduler's setting; the euler scheduler has none"):
        make_scheduler("euler", eta=0.3)
    with pytest.raises(InputError, match="a DDIM eta is for the ddim scheduler; this run samples with tcd"):
        resolve_sampling("tcd-4step", ddim_eta=0.3)
    assert resolve_sampling(ddim_eta=0.5).make_scheduler().config.eta == 0.5


def test_generate_and_a_run_entry_take_the_eta(tmp_path, base_folder, one_thread, capsys):
    """--ddim-eta and the run key ddim_eta draw what the pipeline draws with that scheduler; bad ones are one line
    before any model loads."""
    tiny_motion_file = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    args = ["generate", "--base", str(base_folder), "--motion-module", str(tiny_motion_file), "--prompt", "a fox",
            "--frames", "4", "--steps", "3", "--seed", "3", "--quiet"]  # fmt: skip
    assert main([*args, "--ddim-eta", "0.6", "--output", str(tmp_path / "eta.npy")]) == 0
    assert main([*args, "--output", str(tmp_path / "plain.npy")]) == 0
    from animatediff.pipeline import AnimationPipeline

    pipe = AnimationPipeline.from_pretrained(base_folder, tiny_motion_file)
    pipe.scheduler = make_scheduler("ddim", eta=0.6)
    expected = pipe("a fox", "", num_frames=4, num_inference_steps=3, seed=3, progress=False)[0]
    got = np.load(tmp_path / "eta.npy")
    np.testing.assert_array_equal(got, expected)
    assert np.abs(got - np.load(tmp_path / "plain.npy")).mean() > 1e-3
    refused = {"2": "DDIM eta must be a number in [0, 1], got 2.0", "0.5": "a DDIM eta is for the ddim scheduler"}
    for flags, message in ((["--ddim-eta", "2"], refused["2"]), (["--ddim-eta", "0.5", "--scheduler", "euler"],
                                                                 refused["0.5"])):  # fmt: skip
        assert main([*args, *flags, "--output", str(tmp_path / "o.npy")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1

    from animatediff.entry_sampling_keys import entry_scheduler

    def entry(**keys):  # noqa: ANN003, ANN202
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump([{"motion_module": "m", "prompt": ["a"], **keys}]))
        return load_prompt_config(path)[0][0]

    assert entry_scheduler(entry(ddim_eta=0.6), "").config.eta == 0.6  # the official DDIM, at that eta
    assert entry_scheduler(entry(scheduler="ddim", ddim_eta=0.2), "").config.eta == 0.2
    with pytest.raises(InputError, match=re.escape("c.yaml entry 0: a DDIM eta is for the ddim scheduler")):
        entry(scheduler="euler", ddim_eta=0.2)
