import numpy as np
import pytest
import torch

from animatediff.world.looks import (
    SHAPE_NAMES,
    TEXTURE_NAMES,
    LookConfig,
    _augment,
    _rendered,
    load_look_classifier,
    save_look_classifier,
    train_look_classifier,
)


def test_renderings_are_labelled_with_their_shape_and_texture():
    images, shapes, textures = _rendered(60, seed=0, resolution=16)
    assert images.shape == (60, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    # The full world: the star and every texture appear.
    assert {SHAPE_NAMES[i] for i in shapes} >= {"star", "circle"}
    assert {TEXTURE_NAMES[i] for i in textures} == set(TEXTURE_NAMES)


def test_augmentation_blurs_and_noises_within_range_deterministically():
    images, _, _ = _rendered(8, seed=1, resolution=16)
    cfg = LookConfig(blur=1.0, noise=0.05)
    a = _augment(images, cfg, torch.Generator().manual_seed(0))
    b = _augment(images, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == images.shape
    assert 0 <= a.min() and a.max() <= 1
    assert 0 < (a - images).abs().mean() < 0.1
    # Without blur or noise the images pass unchanged.
    plain = _augment(images, LookConfig(blur=0.0, noise=0.0), torch.Generator().manual_seed(0))
    torch.testing.assert_close(plain, images, atol=1e-5, rtol=0)


def test_training_learns_and_the_saved_classifier_predicts_the_same(tmp_path, one_thread):
    cfg = LookConfig(images=64, steps=150, batch_size=32, resolution=16, blur=0.0, noise=0.0, lr=3e-3, progress=False)
    model, accuracy = train_look_classifier(cfg)
    # The classifier the build ships is checked for accuracy in test_world_shipped; here, that training learns.
    assert accuracy["final_loss"] < 0.7 * accuracy["first_loss"]
    assert 0 <= accuracy["shape_accuracy"] <= 1 and 0 <= accuracy["texture_accuracy"] <= 1
    path = save_look_classifier(model, tmp_path / "looks.safetensors", accuracy)
    frames = _rendered(10, seed=3, resolution=16)[0].permute(0, 2, 3, 1).numpy()
    assert load_look_classifier(path).predict(frames) == model.predict(frames)
    shapes, textures = model.predict(frames)
    assert len(shapes) == len(textures) == 10 and set(shapes) <= set(SHAPE_NAMES)
    with pytest.raises(FileNotFoundError, match="world build"):
        load_look_classifier(tmp_path / "missing.safetensors")


def test_predict_takes_frames_as_the_pipeline_returns_them():
    from animatediff.world.looks import LookClassifier

    frames = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float64)
    shapes, textures = LookClassifier().eval().predict(frames)
    assert len(shapes) == 4 and len(textures) == 4
