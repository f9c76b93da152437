from dataclasses import replace

import numpy as np
import pytest

from animatediff.world import render
from animatediff.world.render import render_image, render_video
from animatediff.world.scenes import BACKGROUNDS, COLOURS, FULL_WORLD, MOTIONS, SceneSpec, WorldConfig, sample_spec


def pixel_centroid(frame: np.ndarray, background: tuple[int, int, int]) -> tuple[float, float]:
    """Centroid of the pixels that differ from the background, weighted by how much they differ."""
    weight = np.abs(frame.astype(np.float32) - np.array(background, dtype=np.float32)).sum(-1)
    ys, xs = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]]
    return float((weight * xs).sum() / weight.sum()), float((weight * ys).sum() / weight.sum())


def video_of(motion: str, seed: int = 0, frames: int = 8, **fixed) -> object:
    rng = np.random.default_rng(seed)
    return render_video(sample_spec(rng, FULL_WORLD, video=True, fixed={"motion": motion, **fixed}), frames)


def test_rendering_is_deterministic_by_seed():
    a = render_video(sample_spec(np.random.default_rng(7), video=True), 8)
    b = render_video(sample_spec(np.random.default_rng(7), video=True), 8)
    c = render_video(sample_spec(np.random.default_rng(8), video=True), 8)
    assert a.spec == b.spec
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.spec != c.spec
    assert a.frames.shape == (8, 32, 32, 3) and a.frames.dtype == np.uint8


def test_captions_follow_the_spec():
    spec = SceneSpec("circle", "red", "blue", motion="left", amount=0.3, x=0.7)
    assert render_image(SceneSpec("circle", "red", "blue")).caption == "a red circle on a blue background"
    assert render_image(spec, t=0.5).caption == "a red circle moving left on a blue background"
    assert render_video(spec, 4).caption == "a red circle moving left on a blue background"
    striped = SceneSpec("square", "green", "black", texture="striped", motion="growing", amount=2.0, size=0.1)
    assert striped.caption() == "a green striped square growing on a black background"
    still = SceneSpec("triangle", "yellow", "gray", texture="outlined")
    assert still.caption() == "a yellow outlined triangle on a gray background"
    for seed in range(20):
        spec = sample_spec(np.random.default_rng(seed), FULL_WORLD, video=True)
        words = spec.caption().split()
        assert spec.colour in words and spec.shape in words and spec.background in words
        assert spec.colour != spec.background


def test_pixels_show_the_captioned_colours():
    r = render_image(SceneSpec("square", "red", "white", size=0.2))
    assert tuple(r.image[16, 16]) == COLOURS["red"]
    assert tuple(r.image[1, 1]) == BACKGROUNDS["white"]
    assert r.colour_rgb == COLOURS["red"] and r.background_rgb == BACKGROUNDS["white"]


@pytest.mark.parametrize("motion,axis,sign", [("left", 0, -1), ("right", 0, 1), ("up", 1, -1), ("down", 1, 1)])
def test_centroid_moves_in_the_captioned_direction(motion, axis, sign):
    for seed in range(3):
        r = video_of(motion, seed)
        steps = np.diff(r.centroids[:, axis])
        assert (sign * steps > 0).all(), r.centroids
        assert sign * (r.centroids[-1, axis] - r.centroids[0, axis]) > 0.2 * 32
        # The other axis stays put.
        assert np.ptp(r.centroids[:, 1 - axis]) < 0.05


def test_ground_truth_centroid_matches_the_pixels(monkeypatch):
    # The ground truth is the object's own centroid: measure it on frames drawn without the trail.
    monkeypatch.setattr("animatediff.world.render.TRAIL", ())
    for motion in ("left", "down", "bouncing"):
        r = video_of(motion, seed=3, texture="solid")
        for frame, (gx, gy) in zip(r.frames, r.centroids):
            px, py = pixel_centroid(frame, r.background_rgb)
            assert abs(px - gx) < 0.35 and abs(py - gy) < 0.35


def test_bounce_rises_then_lands():
    r = video_of("bouncing", frames=9)
    y = r.centroids[:, 1]
    assert y.argmin() == 4  # highest point mid-clip (image y points down)
    assert y[0] - y.min() > 0.2 * 32
    assert abs(y[-1] - y[0]) < 1e-6


def test_growing_and_shrinking_change_the_area():
    grow, shrink = video_of("growing", seed=1), video_of("shrinking", seed=1)
    assert (np.diff(grow.areas) > 0).all() and grow.areas[-1] > 2 * grow.areas[0]
    assert (np.diff(shrink.areas) < 0).all() and shrink.areas[0] > 2 * shrink.areas[-1]
    assert np.ptp(grow.centroids, axis=0).max() < 0.2


def test_rotation_changes_frames_but_not_the_place():
    r = video_of("rotating", seed=2, shape="triangle")
    assert np.ptp(r.centroids, axis=0).max() < 0.3
    assert np.abs(r.frames[0].astype(int) - r.frames[-1].astype(int)).sum() > 0
    with pytest.raises(ValueError, match="rotating"):
        sample_spec(
            np.random.default_rng(0), WorldConfig(), video=True, fixed={"motion": "rotating", "shape": "circle"}
        )


@pytest.mark.parametrize("motion", MOTIONS)
def test_objects_stay_inside_the_frame(motion, monkeypatch):
    # The object itself; its trail reaches back to before the clip began, so the frame's edge may cut it, as in a
    # photograph of something that came in from outside the picture.
    monkeypatch.setattr(render, "TRAIL", ())
    for seed in range(10):
        r = video_of(motion, seed, frames=16)
        border = np.concatenate([r.frames[:, 0], r.frames[:, -1], r.frames[:, :, 0], r.frames[:, :, -1]], axis=1)
        assert (border == np.array(r.background_rgb, dtype=np.uint8)).all(), r.spec


def test_textures():
    outlined = render_image(SceneSpec("square", "red", "black", texture="outlined", size=0.25))
    # The outline's inside shows the background; its rim shows the colour.
    assert tuple(outlined.image[16, 16]) == BACKGROUNDS["black"]
    assert (outlined.image == np.array(COLOURS["red"], dtype=np.uint8)).all(-1).sum() > 20
    striped = render_image(SceneSpec("square", "red", "black", texture="striped", size=0.25))
    inside = striped.image[11:21, 11:21].reshape(-1, 3)
    assert len({tuple(p) for p in inside}) >= 2 and tuple(COLOURS["red"]) in {tuple(p) for p in inside}
    assert outlined.areas[0] == pytest.approx(striped.areas[0])


def test_bad_specs_are_named():
    with pytest.raises(ValueError, match="unknown colour 'teal'"):
        SceneSpec("circle", "teal", "black")
    with pytest.raises(ValueError, match="unknown motion"):
        SceneSpec("circle", "red", "black", motion="jumping")
    with pytest.raises(ValueError, match="unknown shapes"):
        WorldConfig(shapes=("circle", "hexagon"))
    with pytest.raises(ValueError, match="at least 2 frames"):
        render_video(SceneSpec("circle", "red", "black"), 1)
    with pytest.raises(ValueError, match="a still scene cannot fix motion"):
        sample_spec(np.random.default_rng(0), fixed={"motion": "left"})


def test_a_moving_object_leaves_a_fading_trail_behind_it_and_a_still_one_none():
    moving = SceneSpec("square", "red", "black", motion="right", amount=0.3, x=0.4, size=0.15)
    still = replace(moving, motion="still", amount=0.0)
    a, b = render_image(moving, t=0.5), render_image(still)
    # The same object at the same place (x 0.4 + 0.3·0.5 = 0.55 against 0.4: compare against a still one there).
    there = render_image(replace(still, x=0.55))
    assert np.allclose(a.centroids, there.centroids) and np.allclose(a.areas, there.areas)
    diff = np.abs(a.image.astype(int) - there.image.astype(int)).sum(axis=-1)
    cols = np.nonzero(diff.any(axis=0))[0]
    # Only the trail differs, and it lies behind (left of) the object, fainter than the object itself.
    assert cols.size and cols.max() < a.centroids[0, 0]
    trail = a.image[16, cols.min() : cols.max() + 1, 0].astype(int)
    assert (trail > BACKGROUNDS["black"][0]).all() and (trail < COLOURS["red"][0]).all()
    assert b.image.tobytes() == render_image(still, t=0.0).image.tobytes()
    with pytest.raises(ValueError, match="clip time"):
        render_image(moving, t=1.5)


def whole_canvas_frame(spec: SceneSpec, t: float, resolution: int, supersample: int = 4) -> np.ndarray:
    """The renderer's blend done over the whole supersampled canvas for every layer, as the shipped models' data
    was first rendered: the reference the bounding-box blend must reproduce bit for bit."""
    S = resolution * supersample
    hires = np.broadcast_to(np.array(BACKGROUNDS[spec.background], dtype=np.float32), (S, S, 3))
    if spec.motion != "still":
        trail, trail_paint = np.zeros((S, S, 1), np.float32), np.zeros((S, S, 3), np.float32)
        for offset, opacity in render.TRAIL:
            _, coverage, paint = render._layer(spec, t - offset, S)
            a = opacity * render._coverage(coverage)[..., None]
            stronger = a > trail
            trail, trail_paint = np.where(stronger, a, trail), np.where(stronger, paint, trail_paint)
        hires = hires * (1 - trail) + trail_paint * trail
    _, coverage, paint = render._layer(spec, t, S)
    a = render._coverage(coverage)[..., None]
    hires = hires * (1 - a) + paint * a
    frame = hires.reshape(resolution, supersample, resolution, supersample, 3).mean(axis=(1, 3))
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def test_blending_only_where_a_layer_covers_gives_the_whole_canvas_pixels():
    rng = np.random.default_rng(11)
    for i in range(60):
        spec = sample_spec(rng, FULL_WORLD, video=i % 4 != 0)
        resolution = (16, 32)[i % 2]
        for t in (0.0, float(rng.random()), 1.0):
            expected = whole_canvas_frame(spec, t, resolution)
            assert np.array_equal(render.render_frame(spec, t, resolution)[0], expected), (spec, t)
