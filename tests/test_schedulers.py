import numpy as np
import pytest
from diffusers import DDIMScheduler

from animatediff.sampling import make_scheduler, scheduler_names
from animatediff.sampling.schedulers import scheduler_key


def test_default_is_the_official_inference_scheduler():
    s = make_scheduler()
    assert isinstance(s, DDIMScheduler)
    c = s.config
    assert (c.beta_start, c.beta_end, c.beta_schedule, c.steps_offset, c.clip_sample) == (
        0.00085,
        0.012,
        "linear",
        1,
        False,
    )
    # Everything else at diffusers' defaults, as the official code builds DDIMScheduler(**config) fresh.
    assert c.set_alpha_to_one and c.timestep_spacing == "leading" and c.num_train_timesteps == 1000


@pytest.mark.parametrize("name", scheduler_names())
def test_every_scheduler_runs_the_pipeline(make_pipeline, name):
    pipe = make_pipeline()
    pipe.scheduler = make_scheduler(name)
    assert pipe.scheduler.config.beta_schedule == "linear"
    frames = pipe("a cat", num_frames=2, num_inference_steps=3, guidance_scale=2.0, seed=0, progress=False)
    assert np.isfinite(frames).all() and frames.shape == (1, 2, 16, 16, 3)


def test_aliases_and_unknown_names():
    assert make_scheduler("dpmpp_2m_karras").config.use_karras_sigmas
    # animatediff-cli-prompt-travel's spelling: k_ for Karras sigmas
    assert make_scheduler("k_dpmpp_2m").config.use_karras_sigmas
    assert make_scheduler("k_dpmpp_2m_sde").config.algorithm_type == "sde-dpmsolver++"
    with pytest.raises(ValueError, match="unknown scheduler 'heun2'.*ddim"):
        make_scheduler("heun2")


def test_sampling_follows_how_the_base_was_trained():
    from animatediff.sampling import for_model, model_noise_settings

    assert model_noise_settings() == {"prediction_type": "epsilon"}
    zsnr = model_noise_settings("v_prediction", zero_snr=True)
    assert zsnr == {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}
    ddim = make_scheduler()
    assert for_model(ddim, model_noise_settings()) is ddim  # an ε base keeps the official scheduler as it is
    for name in ("ddim", "euler", "dpm++-2m-karras", "unipc"):
        s = for_model(make_scheduler(name), zsnr)
        assert s.config.prediction_type == "v_prediction" and s.config.timestep_spacing == "trailing"
        assert s.config.beta_schedule == "linear" and s.alphas_cumprod[-1] < 1e-6  # zero terminal SNR
    s = for_model(make_scheduler("ddim"), zsnr)
    s.set_timesteps(10)
    assert int(s.timesteps[0]) == 999  # sampling starts where the schedule holds no signal
    with pytest.raises(ValueError, match="PNDMScheduler scheduler cannot sample this model"):
        for_model(make_scheduler("pndm"), zsnr)


def test_a_v_prediction_base_is_sampled_as_one(base_folder, tmp_path, capsys):
    import json

    from animatediff.cli import main
    from animatediff.formats.motion_module_files import save_motion_modules
    from animatediff.pipeline import AnimationPipeline
    from tests.tiny import tiny_motion

    config_file = base_folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps(config | {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True}))
    module = tiny_motion("v3", random=True)
    pipe = AnimationPipeline.from_pretrained(base_folder, module, "euler")
    assert pipe.scheduler.config.prediction_type == "v_prediction" and pipe.scheduler.config.rescale_betas_zero_snr
    frames = pipe("a cat", num_frames=2, num_inference_steps=3, seed=0, progress=False)
    assert np.isfinite(frames).all()
    forced = AnimationPipeline.from_pretrained(base_folder, module, prediction_type="epsilon", zero_snr=False)
    assert forced.scheduler.config.prediction_type == "epsilon" and not forced.scheduler.config.rescale_betas_zero_snr
    save_motion_modules(module, tmp_path / "mm.safetensors")
    from animatediff.model_cache import ModelCache, PipelineSpec

    cached = ModelCache().pipeline(PipelineSpec(str(base_folder), str(tmp_path / "mm.safetensors")))
    assert cached.scheduler.config.prediction_type == "v_prediction" and cached.noise_settings["rescale_betas_zero_snr"]
    args = ["generate", "--base", str(base_folder), "--motion-module", str(tmp_path / "mm.safetensors")]
    args += ["--prompt", "a cat", "--frames", "2", "--steps", "2", "--quiet", "--output", str(tmp_path / "a.npy")]
    assert main(args) == 0
    assert main([*args, "--scheduler", "pndm"]) == 2
    assert "PNDMScheduler scheduler cannot sample this model" in capsys.readouterr().err
    assert main([*args, "--scheduler", "pndm", "--no-zero-snr"]) == 0
    assert main([*args, "--guidance-rescale", "0.7"]) == 0
    assert main([*args, "--guidance-rescale", "1.5"]) == 2
    assert "guidance_rescale must be in [0, 1], got 1.5" in capsys.readouterr().err


def test_guidance_rescale_matches_the_conditional_spread():
    import torch

    from animatediff.sampling import guided

    cond, uncond = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    predict = lambda x, t, ctx, frames: ctx  # noqa: E731 - the "prediction" is the context itself
    x = torch.zeros(2, 4, 3, 2, 2)
    plain = guided(predict, uncond, cond, 7.5)(x, 0)
    torch.testing.assert_close(plain, uncond + 7.5 * (cond - uncond))
    torch.testing.assert_close(guided(predict, uncond, cond, 7.5, 0.0)(x, 0), plain)
    full = guided(predict, uncond, cond, 7.5, 1.0)(x, 0)
    torch.testing.assert_close(full.flatten(1).std(1), cond.flatten(1).std(1))
    half = guided(predict, uncond, cond, 7.5, 0.5)(x, 0)
    torch.testing.assert_close(half, 0.5 * full + 0.5 * plain)
    with pytest.raises(ValueError, match="guidance_rescale must be in"):
        guided(predict, uncond, cond, 7.5, -0.1)


@pytest.mark.parametrize(
    "name", ["euler-karras", "heun", "dpm2-karras", "dpm2-ancestral", "dpm2-ancestral-karras", "dpm++-2m-sde", "deis"]
)
def test_the_ui_samplers_draw_diffusers_frames(make_pipeline, name, one_thread):
    """A1111's and ComfyUI's samplers that diffusers has: the frames of diffusers' AnimateDiffPipeline with the same
    scheduler (second-order ones evaluate twice per step; ancestral and SDE ones draw their step noise from the
    seed's generator after the start noise, as diffusers' do)."""
    import torch

    from tests.diffusers_reference import diffusers_pipeline

    ours = make_pipeline("v2")
    ours.scheduler = make_scheduler(name)
    reference = diffusers_pipeline(ours, make_scheduler(name))
    args = dict(prompt="a red circle", negative_prompt="blurry", num_frames=4, height=16, width=16,
                num_inference_steps=4, guidance_scale=7.5)  # fmt: skip
    expected = reference(**args, generator=torch.Generator("cpu").manual_seed(3), output_type="np").frames
    np.testing.assert_allclose(ours(**args, seed=3, progress=False), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["dpm++-sde", "dpm++-sde-karras"])
def test_dpmpp_sde_draws_diffusers_frames_and_its_seed_fixes_the_brownian_noise(make_pipeline, name, one_thread):
    """A1111's "DPM++ SDE (Karras)" and animatediff-cli-prompt-travel's default `k_dpmpp_sde`: diffusers'
    DPMSolverSDEScheduler, whose step noise is a Brownian tree. With its `noise_sampler_seed` fixed the frames are
    diffusers'; without, the run's seed picks the tree."""
    import torch

    from tests.diffusers_reference import diffusers_pipeline

    ours = make_pipeline("v2")
    ours.scheduler = make_scheduler(name, noise_sampler_seed=11)
    reference = diffusers_pipeline(ours, make_scheduler(name, noise_sampler_seed=11))
    args = dict(prompt="a red circle", negative_prompt="blurry", num_frames=4, height=16, width=16,
                num_inference_steps=4, guidance_scale=7.5, )  # fmt: skip
    expected = reference(**args, generator=torch.Generator("cpu").manual_seed(3), output_type="np").frames
    np.testing.assert_allclose(ours(**args, seed=3, progress=False), expected, rtol=0, atol=1e-4)
    ours.scheduler = make_scheduler(name)
    first, again = (ours(**args, seed=3, progress=False) for _ in range(2))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - ours(**args, seed=4, progress=False)).max() > 1e-4
    assert scheduler_key("k_dpmpp_sde") == "dpm++-sde-karras"


def test_dpmpp_sde_without_torchsde_is_one_line(monkeypatch):
    import animatediff.sampling.schedulers as schedulers

    monkeypatch.setattr(schedulers, "is_torchsde_available", lambda: False)
    with pytest.raises(ValueError, match=r"the dpm\+\+-sde-karras scheduler needs torchsde: pip install torchsde"):
        make_scheduler("k_dpmpp_sde")
    make_scheduler("dpm++-2m-sde")  # the multistep SDE solver needs no torchsde
