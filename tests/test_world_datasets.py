import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from animatediff.world.datasets import (
    DEFAULT_HOLDOUT,
    HoldoutRule,
    WorldImages,
    WorldVideos,
    personalization_images,
)
from animatediff.world.render import render_image
from animatediff.world.scenes import BASE_WORLD, MOTION_PHRASES, NEW_SHAPES


def test_image_items_follow_the_contract():
    ds = WorldImages(8, seed=0, moving=0.0)
    item = ds[3]
    assert set(item) == {"pixel_values", "text"}
    x = item["pixel_values"]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < 0 < x.max()
    assert item["text"] == ds.rendering(3).caption == ds.spec(3).caption()
    assert "moving" not in item["text"]


def test_images_of_moving_objects_carry_their_motion_words_and_a_moment():
    ds = WorldImages(200, seed=0)
    moving = [i for i in range(200) if ds.spec(i).motion != "still"]
    assert 0.6 < len(moving) / 200 < 0.9  # moving=0.75 by default
    for i in moving[:10]:
        spec, r = ds.spec(i), ds.rendering(i)
        assert MOTION_PHRASES[spec.motion] in r.caption
        assert 0.0 <= ds.moment(i) <= 1.0
        np.testing.assert_array_equal(r.image, render_image(spec, 32, ds.moment(i)).image)
    assert all(ds.spec(i).motion == "still" for i in range(20) if i not in moving)
    assert all(WorldImages(50, seed=0, moving=0.0).spec(i).motion == "still" for i in range(50))
    with pytest.raises(ValueError, match="fraction"):
        WorldImages(4, moving=1.5)


def test_video_items_follow_the_contract():
    ds = WorldVideos(4, seed=0, frames=8, resolution=16)
    item = ds[1]
    assert set(item) == {"pixel_values", "text"}
    assert item["pixel_values"].shape == (8, 3, 16, 16)
    assert item["pixel_values"].abs().max() <= 1.0
    assert item["text"] == ds.spec(1).caption()
    # The frames are the rendering's, rescaled.
    frames = torch.from_numpy(ds.rendering(1).frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(item["pixel_values"], frames)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["pixel_values"].shape == (2, 8, 3, 16, 16) and len(batch["text"]) == 2


def test_items_are_deterministic_per_index_and_seed():
    a, b, c = WorldImages(16, seed=1), WorldImages(16, seed=1), WorldImages(16, seed=2)
    torch.testing.assert_close(a[5]["pixel_values"], b[5]["pixel_values"])
    assert [a.spec(i) for i in range(16)] == [b.spec(i) for i in range(16)]
    assert [a.spec(i) for i in range(16)] != [c.spec(i) for i in range(16)]
    # Index order does not matter: item 5 is item 5 whether or not 0..4 came first.
    assert WorldImages(16, seed=1).spec(5) == a.spec(5)
    # Images and videos of one seed are different scenes.
    assert [a.spec(i).shape for i in range(16)] != [WorldVideos(16, seed=1).spec(i).shape for i in range(16)]


def test_holdout_combinations_never_reach_training():
    videos_train = WorldVideos(300, seed=0, frames=2, split="train")
    videos_held = WorldVideos(60, seed=0, frames=2, split="holdout")
    train_specs = [videos_train.spec(i) for i in range(300)]
    held_specs = [videos_held.spec(i) for i in range(60)]
    assert not any(rule.matches(s) for s in train_specs for rule in DEFAULT_HOLDOUT)
    assert all(any(rule.matches(s) for rule in DEFAULT_HOLDOUT) for s in held_specs)
    # Every held-out rule is exercised, and each part of a held-out combination is still seen in training.
    assert {next(r for r in DEFAULT_HOLDOUT if r.matches(s)) for s in held_specs} == set(DEFAULT_HOLDOUT)
    assert any(s.shape == "circle" for s in train_specs) and any(s.motion == "up" for s in train_specs)
    # Images of moving objects follow the motion rules too; still images only the rules without motions.
    images_train = WorldImages(300, seed=0, split="train")
    assert not any(rule.matches(images_train.spec(i)) for i in range(300) for rule in DEFAULT_HOLDOUT)
    images_held = WorldImages(80, seed=0, split="holdout")
    held_images = [images_held.spec(i) for i in range(80)]
    assert all(any(rule.matches(s) for rule in DEFAULT_HOLDOUT) for s in held_images)
    assert {(s.colour, s.shape) for s in held_images if s.motion == "still"} == {
        ("yellow", "triangle"),
        ("blue", "cross"),
    }
    still_only = WorldImages(40, seed=0, split="holdout", moving=0.0)
    assert all(still_only.spec(i).motion == "still" for i in range(40))


def test_personalization_sets_show_looks_the_base_lacks():
    style, obj = personalization_images("style", 30), personalization_images("object", 30)
    assert all(style.spec(i).texture == "outlined" for i in range(30))
    assert all("outlined" in style[i]["text"] for i in range(3))
    assert all(obj.spec(i).shape in NEW_SHAPES for i in range(30))
    assert "outlined" not in BASE_WORLD.textures and not set(NEW_SHAPES) & set(BASE_WORLD.shapes)
    base = WorldImages(200, seed=0, split="all")
    assert not any(base.spec(i).texture == "outlined" or base.spec(i).shape in NEW_SHAPES for i in range(200))
    with pytest.raises(ValueError, match="unknown personalization 'sketch'"):
        personalization_images("sketch")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown split"):
        WorldImages(4, split="test")
    with pytest.raises(ValueError, match="holdout split is empty"):
        WorldImages(4, split="holdout", holdout=(HoldoutRule(motion="left"),), moving=0.0)
    with pytest.raises(IndexError):
        WorldImages(4)[4]
