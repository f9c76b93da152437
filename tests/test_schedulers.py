import numpy as np
import pytest
from diffusers import DDIMScheduler

from animatediff.sampling import make_scheduler, scheduler_names


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
    with pytest.raises(ValueError, match="unknown scheduler 'heun2'.*ddim"):
        make_scheduler("heun2")
