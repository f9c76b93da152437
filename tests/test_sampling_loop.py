import pytest
import torch
from diffusers import AnimateDiffVideoToVideoPipeline

from animatediff.errors import InputError
from animatediff.sampling import denoise, make_scheduler, sampling_timesteps


def _reference_timesteps(name: str, steps: int, strength: float) -> torch.Tensor:
    """diffusers' video-to-video pipeline's own choice of timesteps for a strength."""
    scheduler = make_scheduler(name)
    pipe = AnimateDiffVideoToVideoPipeline.__new__(AnimateDiffVideoToVideoPipeline)
    pipe.scheduler = scheduler
    scheduler.set_timesteps(steps)
    timesteps, _ = pipe.get_timesteps(steps, scheduler.timesteps, strength, "cpu")
    return timesteps


@pytest.mark.parametrize("name", ["ddim", "euler", "dpm++-2m", "unipc"])
@pytest.mark.parametrize("strength", [1.0, 0.8, 0.5, 0.13])
def test_a_strength_runs_the_timesteps_diffusers_runs(name, strength):
    ours = sampling_timesteps(make_scheduler(name), 20, strength)
    torch.testing.assert_close(ours, _reference_timesteps(name, 20, strength))


def test_bad_strengths_are_input_errors():
    for strength in (0.0, 1.5, 0.01):
        with pytest.raises(InputError, match="strength"):
            sampling_timesteps(make_scheduler("ddim"), 20, strength)


@pytest.mark.parametrize("name", ["ddim", "dpm++-2m", "euler-ancestral"])
def test_a_run_split_in_two_is_the_run_in_one(name):
    """The loop runs the timesteps it is given: stopping midway and going on gives what one run gives, for
    multistep and stochastic samplers too (their state and generator carry over)."""
    denoiser = lambda x, t: 0.1 * x + 0.01 * t / 1000  # noqa: E731 - a smooth toy predictor
    x = torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(0))

    def run(splits: list[int]) -> torch.Tensor:
        scheduler = make_scheduler(name)
        timesteps = sampling_timesteps(scheduler, 12)
        latents, generator, start = x * scheduler.init_noise_sigma, torch.Generator().manual_seed(1), 0
        for stop in [*splits, len(timesteps)]:
            latents = denoise(denoiser, scheduler, latents, timesteps[start:stop], generator, progress=False)
            start = stop
        return latents

    torch.testing.assert_close(run([5]), run([]), rtol=0, atol=0)
    torch.testing.assert_close(run([1, 7, 11]), run([]), rtol=0, atol=0)
