"""Few-step sampling (issue 29, item 3): Lightning's single-file motion modules in diffusers' key layout, the
timestep spacing, the TCD scheduler, and the presets (`sampling/presets.py`), each checked against the scheduler its
model card builds with diffusers, run end to end on tiny models and through `animatediff generate` / `run`."""

import re

import numpy as np
import pytest
import torch
import yaml
from diffusers import (
    AnimateDiffPipeline,
    EulerDiscreteScheduler,
    LCMScheduler,
    MotionAdapter,
    PNDMScheduler,
    TCDScheduler,
)
from PIL import Image, ImageSequence
from safetensors.torch import save_file

from animatediff.cli import main, sampling_options
from animatediff.formats.motion_module_files import load_motion_modules, motion_state_dict, official_to_diffusers
from animatediff.pipeline import AnimationPipeline
from animatediff.prompt_config import load_prompt_config
from animatediff.sampling import make_scheduler, scheduler_names
from animatediff.sampling.presets import PRESETS, resolve_sampling
from animatediff.sampling.schedulers import OFFICIAL_SCHEDULER_CONFIG, SCHEDULERS, TIMESTEP_SPACINGS
from tests.diffusers_reference import diffusers_pipeline
from tests.tiny import official_scheduler

ORDER = (
    "ddim euler euler-ancestral euler-karras heun dpm2 dpm2-karras dpm2-ancestral dpm2-ancestral-karras dpm++-2m "
    "dpm++-2m-karras dpm++-2m-sde dpm++-2m-sde-karras dpm++-sde dpm++-sde-karras unipc deis pndm ddpm lcm tcd"
).split()

SD15_SCHEDULER = {  # stable-diffusion-v1-5's scheduler/scheduler_config.json, the base the model cards start from
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
CARD_SCHEDULERS = {  # what each model card builds from the pipeline's scheduler config
    "euler": lambda config: EulerDiscreteScheduler.from_config(
        config, timestep_spacing="trailing", beta_schedule="linear"
    ),
    "lcm": lambda config: LCMScheduler.from_config(config, beta_schedule="linear"),
    "tcd": lambda config: TCDScheduler.from_config(config, beta_schedule="linear"),
}


def tiny_adapter(mid_block: bool) -> MotionAdapter:
    torch.manual_seed(0)
    adapter = MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=2, motion_norm_num_groups=32,
                            motion_max_seq_length=32, use_motion_mid_block=mid_block)  # fmt: skip
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0, 0.2)
    return adapter.eval()


@pytest.mark.parametrize("mid_block", [True, False])
def test_a_single_safetensors_in_diffusers_key_layout_loads_to_identical_weights(
    tmp_path, base_folder, mid_block, one_thread
):
    """AnimateDiff-Lightning's form: a MotionAdapter's state dict saved as one file (its card loads it with
    `adapter.load_state_dict(load_file(...))`); the same weights and frames as the adapter saved as a folder."""
    adapter = tiny_adapter(mid_block)
    sd = {k: v.contiguous() for k, v in adapter.state_dict().items()}
    assert any(k.startswith("down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.") for k in sd)
    save_file(sd, tmp_path / "animatediff_lightning_4step_diffusers.safetensors")
    loaded = load_motion_modules(tmp_path / "animatediff_lightning_4step_diffusers.safetensors")
    assert loaded.config.use_mid_block == mid_block and loaded.config.max_frames == 32
    back = official_to_diffusers(motion_state_dict(loaded))
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    adapter.save_pretrained(tmp_path / "folder")
    call = dict(num_frames=3, num_inference_steps=2, seed=1, progress=False)
    videos = [
        AnimationPipeline.from_pretrained(base_folder, tmp_path / name, "euler")("a cat", **call)
        for name in ("animatediff_lightning_4step_diffusers.safetensors", "folder")
    ]
    assert np.array_equal(*videos)


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("base", ["sd15", "tiny"])
def test_each_preset_builds_the_scheduler_its_model_card_prescribes(name, base):
    preset = PRESETS[name]
    config = PNDMScheduler.from_config(SD15_SCHEDULER).config if base == "sd15" else official_scheduler().config
    card = CARD_SCHEDULERS[preset.scheduler](config)
    ours = resolve_sampling(name).make_scheduler()
    assert type(ours) is type(card)
    assert ours.config.beta_schedule == card.config.beta_schedule == "linear"
    assert ours.config.timestep_spacing == card.config.timestep_spacing
    torch.testing.assert_close(ours.alphas_cumprod, card.alphas_cumprod, rtol=0, atol=0)
    ours.set_timesteps(preset.steps)
    card.set_timesteps(preset.steps)
    assert len(ours.timesteps) == preset.steps and torch.equal(ours.timesteps, card.timesteps)
    if hasattr(card, "sigmas"):
        assert torch.equal(ours.sigmas, card.sigmas)
    if name == "lightning-4step":
        assert ours.timesteps.tolist() == [999, 749, 499, 249]  # trailing: from the last training timestep


def test_the_presets_say_what_the_cards_say():
    for steps in (1, 2, 4, 8):
        p = PRESETS[f"lightning-{steps}step"]
        assert (p.scheduler, p.timestep_spacing, p.steps, p.guidance_scale) == ("euler", "trailing", steps, 1.0)
    lcm, tcd = PRESETS["animatelcm"], PRESETS["tcd-4step"]
    assert (lcm.scheduler, lcm.timestep_spacing, lcm.steps, lcm.guidance_scale) == ("lcm", None, 6, 2.0)
    assert (tcd.scheduler, tcd.steps, tcd.guidance_scale, tcd.tcd_gamma) == ("tcd", 4, 1.0, 0.3)
    assert make_scheduler("tcd").config.gamma == 0.3


@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
def test_the_timestep_spacing_applies_to_every_scheduler_that_spaces_its_steps(spacing):
    for name in scheduler_names():
        if name in ("lcm", "tcd"):
            with pytest.raises(ValueError, match=f"the {name} scheduler takes its timesteps from its own"):
                make_scheduler(name, timestep_spacing=spacing)
            continue
        cls, extra = SCHEDULERS[name]
        ours = make_scheduler(name, timestep_spacing=spacing)
        config = {k: v for k, v in OFFICIAL_SCHEDULER_CONFIG.items() if k != "clip_sample"}
        reference = cls.from_config({**config, **extra}, timestep_spacing=spacing)
        ours.set_timesteps(7)
        reference.set_timesteps(7)
        assert torch.equal(ours.timesteps, reference.timesteps), name
    assert make_scheduler("ddim").config.timestep_spacing == "leading"  # unchanged without one


def _reference(pipe: AnimationPipeline, scheduler) -> AnimateDiffPipeline:  # noqa: ANN001
    return diffusers_pipeline(pipe, scheduler)


@pytest.mark.parametrize("name", ["animatelcm", "tcd-4step", "lightning-4step"])
def test_presets_draw_diffusers_frames_with_its_step_noise(make_pipeline, name, one_thread):
    """LCM and TCD draw noise at every step: from one generator seeded with the seed, after the start's draw, as
    diffusers' AnimateDiffPipeline does (TCD's gamma given to diffusers as its `eta`)."""
    preset = PRESETS[name]
    pipe = make_pipeline("v2")
    pipe.scheduler = resolve_sampling(name).make_scheduler()
    args = dict(prompt="a red circle", num_frames=4, height=16, width=16, num_inference_steps=preset.steps)
    args["guidance_scale"] = 2.0  # exercise the guided batch too
    eta = {"eta": preset.tcd_gamma} if preset.tcd_gamma is not None else {}
    reference = _reference(pipe, CARD_SCHEDULERS[preset.scheduler](PNDMScheduler.from_config(SD15_SCHEDULER).config))
    expected = reference(**args, **eta, generator=torch.Generator("cpu").manual_seed(7), output_type="np").frames
    got = pipe(**args, seed=7, progress=False)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert np.array_equal(got, pipe(**args, seed=7, progress=False))  # the same seed, the same step noise


def test_tcd_gamma_reaches_every_step(make_pipeline, one_thread):
    pipe = make_pipeline()
    call = dict(num_frames=2, num_inference_steps=3, guidance_scale=1.0, seed=3, progress=False)
    videos = {}
    for gamma in (0.0, 0.3, 0.6):
        pipe.scheduler = make_scheduler("tcd", gamma=gamma)
        videos[gamma] = pipe("a cat", **call)
    assert not np.allclose(videos[0.0], videos[0.3]) and not np.allclose(videos[0.3], videos[0.6])
    with pytest.raises(ValueError, match=re.escape("TCD gamma must be a number in [0, 1], got 1.5")):
        make_scheduler("tcd", gamma=1.5)
    with pytest.raises(ValueError, match="gamma is the tcd scheduler's setting; the ddim scheduler has none"):
        make_scheduler("ddim", gamma=0.3)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_runs_end_to_end_on_tiny_models(make_pipeline, name, one_thread):
    sampling = resolve_sampling(name)
    pipe = make_pipeline()
    pipe.scheduler = sampling.make_scheduler()
    frames = pipe("a cat", num_frames=3, num_inference_steps=sampling.steps, guidance_scale=sampling.guidance_scale,
                  seed=0, progress=False)  # fmt: skip
    assert frames.shape == (1, 3, 16, 16, 3) and np.isfinite(frames).all()


def test_explicit_settings_take_over_the_preset():
    assert resolve_sampling("lightning-4step", steps=8).steps == 8
    s = resolve_sampling("lightning-4step", guidance_scale=2.0, scheduler="euler_a")
    assert (s.scheduler, s.timestep_spacing, s.guidance_scale, s.steps) == ("euler-ancestral", "trailing", 2.0, 4)
    assert resolve_sampling("lightning-4step", timestep_spacing="linspace").timestep_spacing == "linspace"
    assert resolve_sampling("lightning-2step", scheduler="lcm").timestep_spacing is None  # lcm spaces by its own
    assert resolve_sampling("tcd-4step", tcd_gamma=0.0).tcd_gamma == 0.0
    assert resolve_sampling() == resolve_sampling(None, "ddim", 25)  # no preset: today's defaults
    assert resolve_sampling().make_scheduler().config == make_scheduler("ddim").config


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"preset": "lightning-3step"}, "unknown preset 'lightning-3step'; choose one of: lightning-1step, "),
        ({"timestep_spacing": "even"}, "unknown timestep spacing 'even'; choose one of: leading, trailing, linspace"),
        ({"scheduler": "lcm", "timestep_spacing": "trailing"}, "the lcm scheduler takes its timesteps from its own"),
        ({"tcd_gamma": 0.3}, "a TCD gamma is for the tcd scheduler; this run samples with ddim"),
        ({"preset": "tcd-4step", "tcd_gamma": -1}, "TCD gamma must be a number in [0, 1], got -1"),
        ({"steps": 0}, "steps must be a whole number of at least 1, got 0"),
    ],
)
def test_bad_sampling_settings_are_one_line_input_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        resolve_sampling(**kwargs)
    assert "\n" not in str(err.value)


def test_the_parser_lists_what_the_library_has():
    """cli/sampling_options.py spells these out so that building the parser imports no torch."""
    assert sampling_options.SCHEDULER_NAMES.split(", ") == sorted(scheduler_names(), key=ORDER.index)
    assert sampling_options.TIMESTEP_SPACINGS == TIMESTEP_SPACINGS
    for name, preset in PRESETS.items():
        assert f"{name}: " in sampling_options.PRESETS_HELP or f"{name}, " in sampling_options.PRESETS_HELP, name
        assert f"guidance {preset.guidance_scale:g}" in sampling_options.PRESETS_HELP


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--preset", "lightning"], "unknown preset 'lightning'; choose one of: lightning-1step, lightning-2step"),
        (["--timestep-spacing", "even"], "unknown timestep spacing 'even'; choose one of: leading, trailing"),
        (["--preset", "animatelcm", "--timestep-spacing", "trailing"], "the lcm scheduler takes its timesteps"),
        (["--tcd-gamma", "0.5"], "a TCD gamma is for the tcd scheduler; this run samples with ddim"),
    ],
)
def test_the_cli_refuses_bad_sampling_options_before_loading(tmp_path, capsys, flags, message):
    args = ["generate", "--base", str(tmp_path / "missing"), "--motion-module", str(tmp_path / "missing.ckpt")]
    assert main([*args, *flags, "--prompt", "p", "--output", str(tmp_path / "o.gif"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err  # the sampling check, not the missing models


@pytest.fixture
def sampled(monkeypatch):
    """(steps, guidance, scheduler) of each pipeline call."""
    calls = []
    call = AnimationPipeline.__call__

    def recording(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append((kwargs["num_inference_steps"], kwargs["guidance_scale"], self.scheduler))
        return call(self, *args, **kwargs)

    monkeypatch.setattr(AnimationPipeline, "__call__", recording)
    return calls


def test_generate_with_a_preset_on_the_embedded_world_writes_the_clip(tmp_path, sampled, one_thread):
    out = tmp_path / "fast.gif"
    prompt = "a red circle moving right on a blue background"
    assert main(["generate", "--preset", "lightning-4step", "--prompt", prompt, "--frames", "8", "--seed", "1",
                 "--output", str(out), "--quiet"]) == 0  # fmt: skip
    assert len(list(ImageSequence.Iterator(Image.open(out)))) == 8
    ((steps, guidance, scheduler),) = sampled
    assert (steps, guidance, type(scheduler).__name__) == (4, 1.0, "EulerDiscreteScheduler")
    assert scheduler.config.timestep_spacing == "trailing" and scheduler.timesteps.tolist() == [999, 749, 499, 249]
    flags = ["--preset", "lightning-4step", "--steps", "2", "--guidance-scale", "3", "--frames", "2"]
    assert main(["generate", *flags, "--prompt", prompt, "--output", str(tmp_path / "o.npy"), "--quiet"]) == 0
    assert sampled[1][:2] == (2, 3.0) and sampled[1][2].timesteps.tolist() == [999, 499]


def test_run_entries_take_preset_timestep_spacing_and_tcd_gamma(tmp_path, sampled, one_thread):
    from animatediff.entry_sampling_keys import entry_scheduler

    def entry(**keys):  # noqa: ANN003, ANN202
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump([{"motion_module": "m", "prompt": ["a"], **keys}]))
        return load_prompt_config(path)[0][0]

    lightning = entry(preset="lightning-8step", inference_config="inference-v2.yaml")  # the preset's scheduler wins
    assert (lightning.steps, lightning.guidance_scale) == (8, 1.0)
    scheduler = entry_scheduler(lightning, "")
    assert isinstance(scheduler, EulerDiscreteScheduler) and scheduler.config.timestep_spacing == "trailing"
    own = entry(preset="animatelcm", steps=4, guidance_scale=2.0)
    assert (own.steps, own.guidance_scale) == (4, 2.0) and isinstance(entry_scheduler(own, ""), LCMScheduler)
    tcd = entry_scheduler(entry(scheduler="tcd", tcd_gamma=0.5), "")
    assert isinstance(tcd, TCDScheduler) and tcd.config.gamma == 0.5
    assert entry_scheduler(entry(timestep_spacing="trailing"), "").config.timestep_spacing == "trailing"
    assert (entry().steps, entry().guidance_scale, entry_scheduler(entry(), "").config.timestep_spacing) == (
        25, None, "leading"
    )  # fmt: skip
    for keys, message in (
        ({"preset": "fast"}, "c.yaml entry 0: unknown preset 'fast'; choose one of: lightning-1step"),
        ({"timestep_spacing": "even"}, "c.yaml entry 0: unknown timestep spacing 'even'"),
        ({"preset": 4}, "c.yaml entry 0: preset must be a preset's name, got 4"),
        ({"scheduler": "ddim", "tcd_gamma": 0.2}, "c.yaml entry 0: a TCD gamma is for the tcd scheduler"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            entry(**keys)
    config = tmp_path / "world.yaml"
    from animatediff.world.layout import EMBEDDED

    config.write_text(yaml.safe_dump([{"motion_module": str(EMBEDDED / "motion_module.safetensors"),
                                       "prompt": ["a red circle moving left on a black background"], "seed": 1,
                                       "L": 4, "preset": "tcd-4step"}]))  # fmt: skip
    assert main(["run", str(config), "--output-dir", str(tmp_path / "s"), "--quiet"]) == 0
    ((steps, guidance, scheduler),) = sampled
    assert (steps, guidance, type(scheduler).__name__, scheduler.config.gamma) == (4, 1.0, "TCDScheduler", 0.3)
