import numpy as np
import pytest

from animatediff.world.metrics import colour_correct, consistency, motion_correct, track
from animatediff.world.render import render_video
from animatediff.world.scenes import BASE_WORLD, OPPOSITE_MOTIONS, sample_spec

MEASURED = ["left", "right", "up", "down", "growing", "shrinking"]


@pytest.mark.parametrize("motion", MEASURED)
def test_measures_agree_with_the_ground_truth_of_rendered_clips(motion):
    rng = np.random.default_rng(0)
    for _ in range(5):
        spec = sample_spec(rng, BASE_WORLD, video=True, fixed={"motion": motion, "texture": "solid"})
        r = render_video(spec, 16, 32)
        t = track(r.frames / 255.0)
        np.testing.assert_allclose(t.x * 32, r.centroids[:, 0], atol=1.0)
        assert motion_correct(t, motion), spec
        assert not motion_correct(t, OPPOSITE_MOTIONS[motion]), spec
        assert colour_correct(t, spec.colour)
        if motion in DIRECTIONS_ONLY:
            assert consistency(t) > 0.8


DIRECTIONS_ONLY = {"left", "right", "up", "down"}


def test_a_flickering_clip_scores_low_consistency():
    rng = np.random.default_rng(1)
    spec = sample_spec(rng, BASE_WORLD, video=True, fixed={"motion": "left", "texture": "solid"})
    frames = render_video(spec, 16, 32).frames / 255.0
    still = track(frames)
    noise = frames.copy()
    noise[::2] = noise[::2][:, :, ::-1] * 0.5  # every other frame: mirrored and darkened
    assert consistency(track(noise)) < consistency(still) - 0.2
