import torch

from animatediff.formats import load_motion_modules
from animatediff.pipeline import AnimationPipeline
from animatediff.world.build import build_world, quick_recipe


def test_quick_build_runs_every_stage_and_resumes(tmp_path):
    figures = build_world(tmp_path, quick_recipe())
    assert {"base", "motion"} <= set(figures)
    mm = load_motion_modules(tmp_path / "motion_module.safetensors")
    assert mm.config.block_out_channels == (32, 64)
    pipe = AnimationPipeline.from_pretrained(tmp_path / "base", mm)
    frames = pipe(
        "a red circle moving left on a blue background", num_frames=4, num_inference_steps=2, seed=0, progress=False
    )
    assert frames.shape == (1, 4, 16, 16, 3)
    # Everything exists: a second build does no work and keeps the figures.
    before = (tmp_path / "motion_module.safetensors").stat().st_mtime_ns
    again = build_world(tmp_path, quick_recipe())
    assert (tmp_path / "motion_module.safetensors").stat().st_mtime_ns == before
    assert again["base"] == figures["base"]


def test_ship_writes_fp16_weights_that_generate_like_the_build(tmp_path, monkeypatch):
    import numpy as np
    from safetensors import safe_open

    import animatediff.defaults as defaults
    from animatediff.cli import main
    from animatediff.world.build import ship

    build_world(tmp_path / "build", quick_recipe())
    assets = ship(tmp_path / "build", tmp_path / "assets")
    with safe_open(str(assets / "base" / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    args = dict(
        prompt="a red circle moving left on a blue background",
        num_frames=4,
        num_inference_steps=2,
        seed=0,
        progress=False,
    )
    full = AnimationPipeline.from_pretrained(
        tmp_path / "build" / "base", tmp_path / "build" / "motion_module.safetensors"
    )
    half = AnimationPipeline.from_pretrained(assets / "base", assets / "motion_module.safetensors")
    np.testing.assert_allclose(half(**args), full(**args), atol=2e-2)

    # generate with no model arguments uses the embedded world; none shipped → a clear one-line error.
    monkeypatch.setattr(defaults, "DEFAULT_BASE", assets / "base")
    monkeypatch.setattr(defaults, "DEFAULT_MOTION_MODULE", assets / "motion_module.safetensors")
    out = tmp_path / "default.npy"
    assert (
        main(["generate", "--prompt", "a red circle", "--frames", "4", "--steps", "1", "--output", str(out), "--quiet"])
        == 0
    )
    assert np.load(out).shape == (4, 16, 16, 3)
    monkeypatch.setattr(defaults, "DEFAULT_BASE", tmp_path / "nothing")
    assert main(["generate", "--prompt", "x", "--output", str(out), "--quiet"]) == 2
    assert main(["generate", "--base", str(assets / "base"), "--prompt", "x", "--output", str(out), "--quiet"]) == 2
