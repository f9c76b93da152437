"""A1111's composable prompts (`prompt_and`, `prompt_and.py`, `pipeline/composed_text.py`): the `AND` parts and their
weights as A1111 reads them, and the prediction ε_u + s Σ wᵢ (εᵢ − ε_u) over diffusers' own parts."""

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from animatediff.pipeline.regions import Region
from animatediff.prompt_and import has_and, split_and
from tests.diffusers_reference import diffusers_pipeline


@pytest.mark.parametrize(
    ("prompt", "parts"),
    [
        ("a red circle AND moving up", [("a red circle", 1.0), ("moving up", 1.0)]),
        ("a red circle :0.7 AND moving up:1.5", [("a red circle", 0.7), ("moving up", 1.5)]),
        ("a cat AND a dog: -.5 AND", [("a cat", 1.0), ("a dog", -0.5), ("", 1.0)]),
        ("(cat:1.2) AND dog:2.", [("(cat:1.2)", 1.0), ("dog", 2.0)]),
        ("a cat and a dog, ANDROID", [("a cat and a dog, ANDROID", 1.0)]),  # only AND, as a word of its own
        ("a cat :1.2", [("a cat", 1.2)]),  # A1111 reads a weight without AND too
        ("ratio 16:9 AND x", [("ratio 16", 9.0), ("x", 1.0)]),  # as A1111: a trailing colon and number is a weight
    ],
)
def test_parts_and_weights_are_read_as_a1111_reads_them(prompt, parts):
    assert split_and(prompt) == parts
    assert has_and(prompt) == (len(parts) > 1)


@torch.no_grad()
def composed_over_diffusers(ref, parts, negative, latents, steps, scale):  # noqa: ANN001, ANN201
    """A1111's combination, written out over diffusers' own parts: each part's conditional prediction and the
    negative prompt's, ε_u + s Σ wᵢ (εᵢ − ε_u), DDIM's step, diffusers' decode."""
    f = latents.shape[2]
    texts = [ref.encode_prompt(p, latents.device, 1, True, negative) for p, _ in parts]
    uncond = texts[0][1].repeat_interleave(f, dim=0)
    ref.scheduler.set_timesteps(steps)
    x = latents
    for t in ref.scheduler.timesteps:
        eps_u = ref.unet(x, t, uncond).sample
        guided = eps_u.clone()
        for (cond, _), (_, weight) in zip(texts, parts):
            guided += scale * weight * (ref.unet(x, t, cond.repeat_interleave(f, dim=0)).sample - eps_u)
        x = ref.scheduler.step(guided, t, x).prev_sample
    return ref.video_processor.postprocess_video(ref.decode_latents(x, 16), output_type="np")


@pytest.mark.parametrize("prompt", ["a red circle AND a blue square moving up :0.6", "a red circle :0.5 AND a fox"])
def test_frames_equal_a1111s_combination_over_diffusers_parts(make_pipeline, one_thread, prompt):
    pipe = make_pipeline("v2")
    ref = diffusers_pipeline(pipe)
    latents = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    args = dict(num_frames=4, height=16, width=16, num_inference_steps=3, guidance_scale=7.5, progress=False)
    got = pipe(prompt, "blurry", latents=latents, prompt_and=True, **args)
    expected = composed_over_diffusers(ref, split_and(prompt), "blurry", latents, 3, 7.5)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert np.abs(got - pipe(prompt, "blurry", latents=latents, **args)).max() > 1e-2  # off: AND is a word


def test_a_prompt_without_and_is_the_plain_prompt(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    args = dict(num_frames=4, height=16, width=16, num_inference_steps=2, seed=1, progress=False)
    np.testing.assert_array_equal(pipe("a red circle", prompt_and=True, **args), pipe("a red circle", **args))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"guidance_scale": 1.0}, "need classifier-free guidance"),
        ({"regions": [Region("a cat", np.ones((4, 4)))]}, "without regions and prompt editing"),
        ({"prompt_editing": True}, "without regions and prompt editing"),
        ({"prompt": ["a AND b", "c"]}, "read one prompt string"),
        ({"prompt": {0: "a AND b", 2: "c"}}, "read one prompt string"),
    ],
)
def test_what_composable_prompts_do_not_go_with_is_one_line(make_pipeline, args, message):
    call = {"prompt": "a red circle AND moving up", "num_frames": 4, "progress": False, "prompt_and": True} | args
    with pytest.raises(InputError, match=message):
        make_pipeline("v2")(**call)


def test_the_cli_and_a_run_entry_draw_what_the_library_draws(tmp_path, base_folder, one_thread):
    import yaml

    from animatediff.formats import save_motion_modules
    from animatediff.model_cache import ModelCache
    from animatediff.pipeline import AnimationPipeline
    from animatediff.prompt_config import run_prompt_config
    from tests.cli_helpers import assert_run_drew, generate
    from tests.tiny import tiny_motion

    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    prompt = "a fox AND running :0.5"
    assert generate(base_folder, motion, tmp_path / "o.npy", "--prompt-and", "--guidance-scale", "7.5",
                    "--prompt", prompt) == 0  # fmt: skip
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    call = dict(num_frames=4, num_inference_steps=4, guidance_scale=7.5, seed=3, progress=False)
    expected = pipe(prompt, "", prompt_and=True, **call)[0]
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected)
    entry = {"motion_module": str(motion), "prompt": [prompt], "seed": 3, "steps": 4, "L": 4, "guidance_scale": 7.5,
             "prompt_and": True}  # fmt: skip
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump([entry]))
    run_prompt_config(tmp_path / "entry.yaml", base_folder, tmp_path / "runs", ModelCache(), progress=False)
    assert_run_drew(tmp_path / "runs", expected, tmp_path)


def test_cli_combinations_fail_in_one_line_before_loading(tmp_path, capsys, monkeypatch):
    from tests.cli_helpers import generate_error

    err = generate_error(tmp_path, capsys, monkeypatch, "--prompt-and", "--prompt-editing", "--prompt", "a AND b")
    assert "--prompt-and's AND parts are read without --region and --prompt-editing; use one of them" in err
    err = generate_error(tmp_path, capsys, monkeypatch, "--prompt-and", "--prompt", "0: a AND b\n2: c")
    assert "composable prompts (AND) read one prompt string" in err
