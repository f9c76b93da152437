import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from animatediff.formats import load_motion_modules
from animatediff.pipeline import AnimationPipeline
from animatediff.world.build import build_world
from animatediff.world.layout import LOOK_CLASSIFIER, MOTION_LORAS, PERSONALIZED, WorldModels
from animatediff.world.recipe import WorldRecipe, override_recipe, quick_recipe
from animatediff.world.ship import ship


@pytest.fixture(scope="module")
def quick_build(tmp_path_factory):
    """(folder, figures) of one quick build, rendering in the training process (as on 2 cores), shared by the
    tests that only read it (a build's resumable runs name its own folder, so a copy would not resume)."""
    import animatediff.world.build as build_module
    import animatediff.world.loops as loops
    import animatediff.world.train_vae as train_vae

    folder = tmp_path_factory.mktemp("quick") / "build"
    with pytest.MonkeyPatch.context() as patch:
        for module in (build_module, loops, train_vae):
            patch.setattr(module, "rendering_workers", lambda: 0)
        figures = build_world(folder, quick_recipe())
    return folder, figures


def test_quick_build_runs_every_stage_and_resumes(tmp_path):
    figures = build_world(tmp_path, quick_recipe())
    assert {"base", "motion", "motion_loras", "personalized", "looks"} <= set(figures)
    assert set(figures["personalized"]) == {"object", "style"}
    assert set(figures["motion_loras"]) == {"left"}
    assert figures["personalized"]["object"]["method"] == "dreambooth"
    for name in (*PERSONALIZED.values(), LOOK_CLASSIFIER):
        assert (tmp_path / name).is_file()
    models = WorldModels.from_folder(tmp_path)
    assert models.dreambooth and models.lora and models.looks
    assert set(models.motion_loras) == {"left"}
    mm = load_motion_modules(tmp_path / "motion_module.safetensors")
    assert mm.config.block_out_channels == (32, 64)
    pipe = AnimationPipeline.from_pretrained(tmp_path / "base", mm)
    assert pipe.add_lora(models.motion_loras["left"], 1.0, kind="motion")
    frames = pipe(
        "a red circle moving left on a blue background", num_frames=4, num_inference_steps=2, seed=0, progress=False
    )
    assert frames.shape == (1, 4, 16, 16, 3)
    # Everything exists: a second build does no work and keeps the figures.
    before = (tmp_path / "motion_module.safetensors").stat().st_mtime_ns
    again = build_world(tmp_path, quick_recipe())
    assert (tmp_path / "motion_module.safetensors").stat().st_mtime_ns == before
    assert again["base"] == figures["base"] and again["personalized"] == figures["personalized"]
    # A build stopped after the motion run checkpointed but before its module was copied out picks the run up.
    (tmp_path / "motion_module.safetensors").unlink()
    (tmp_path / "motion_loras" / "left.safetensors").unlink()
    assert list((tmp_path / "motion-run" / "checkpoints").iterdir())
    build_world(tmp_path, quick_recipe())
    assert (tmp_path / "motion_module.safetensors").is_file() and (
        tmp_path / "motion_loras" / "left.safetensors"
    ).is_file()


def test_a_build_run_again_from_scratch_gives_the_same_weights(tmp_path, monkeypatch, quick_build):
    """Every stage draws from seeded CPU generators, so a rebuild on the same machine type reproduces each weight
    exactly (the full recipe's VAE, rebuilt so, equals the shipped one in every fp16 value), whether the world is
    rendered in the training process (the shared build) or in a DataLoader worker (this one)."""
    from safetensors.torch import load_file

    import animatediff.world.build as build_module
    import animatediff.world.loops as loops
    import animatediff.world.train_vae as train_vae

    for module in (build_module, loops, train_vae):
        monkeypatch.setattr(module, "rendering_workers", lambda: 1)
    build_world(tmp_path / "second", quick_recipe())
    built = quick_build[0]
    weights = sorted(p.relative_to(built) for p in built.rglob("*.safetensors"))
    outputs = [p for p in weights if not str(p).startswith(("motion-run", "motion-lora-runs"))]
    assert len(outputs) == 8  # vae, unet, text encoder, two personalized, looks, motion module, a MotionLoRA
    for path in weights:
        first, second = load_file(built / path), load_file(tmp_path / "second" / path)
        assert first.keys() == second.keys(), path
        assert all(torch.equal(first[k], second[k]) for k in first), path


def test_ship_writes_fp16_weights_that_generate_like_the_build(tmp_path, monkeypatch, quick_build):
    import numpy as np
    from safetensors import safe_open

    import animatediff.world.layout as layout
    from animatediff.cli import main

    build = quick_build[0]
    assets = ship(build, tmp_path / "assets")
    for file in (
        assets / "base" / "unet" / "diffusion_pytorch_model.safetensors",
        *(assets / n for n in PERSONALIZED.values()),
        assets / MOTION_LORAS / "left.safetensors",
    ):
        with safe_open(str(file), "pt") as f:
            assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys() if not k.endswith(".alpha"))
    # The shipped personalized models load as users load them: a single-file checkpoint and a kohya LoRA.
    shipped = WorldModels.from_folder(assets)
    pipe = AnimationPipeline.from_pretrained(shipped.base, shipped.motion_module, dreambooth=shipped.dreambooth)
    assert pipe.add_lora(shipped.lora, 0.8)
    args = dict(
        prompt="a red circle moving left on a blue background",
        num_frames=4,
        num_inference_steps=2,
        seed=0,
        progress=False,
    )
    full = AnimationPipeline.from_pretrained(build / "base", build / "motion_module.safetensors")
    half = AnimationPipeline.from_pretrained(assets / "base", assets / "motion_module.safetensors")
    np.testing.assert_allclose(half(**args), full(**args), atol=2e-2)

    # generate with no model arguments uses the embedded world; none shipped → a clear one-line error.
    monkeypatch.setattr(layout, "EMBEDDED", assets)
    out = tmp_path / "default.npy"
    assert (
        main(["generate", "--prompt", "a red circle", "--frames", "4", "--steps", "1", "--output", str(out), "--quiet"])
        == 0
    )
    assert np.load(out).shape == (4, 16, 16, 3)
    monkeypatch.setattr(layout, "EMBEDDED", tmp_path / "nothing")
    assert main(["generate", "--prompt", "x", "--output", str(out), "--quiet"]) == 2
    assert main(["generate", "--base", str(assets / "base"), "--prompt", "x", "--output", str(out), "--quiet"]) == 2


def test_world_eval_measures_every_row_of_a_build(tmp_path, capsys, one_thread, quick_build):
    import json

    from animatediff.cli import main

    out = tmp_path / "eval"
    args = ["world", "eval", "--models", str(quick_build[0]), "--prompts", "2", "--seeds", "1", "--steps", "2"]
    assert main([*args, "--output-dir", str(out)]) == 0
    rows = json.loads((out / "eval.json").read_text())
    names = [r["name"] for r in rows]
    # Base, DreamBooth and LoRA, each with the module, with independent frames, with the module steered by the
    # captioned motion's MotionLoRA and by Text2Video-Zero, plus the base asked for each personalized look.
    assert len(names) == 14 and len(set(names)) == 14
    assert all(r["samples"] == 2 and r["look_accuracy"] is not None for r in rows)
    assert all(0 <= r[k] <= 1 for r in rows for k in ("motion_accuracy", "colour_accuracy", "consistency"))
    # The look, split into shape and texture and by the asked shape, in eval.json and on the terminal.
    assert all(r["look_accuracy"] <= min(r["shape_accuracy"], r["texture_accuracy"]) for r in rows)
    assert all(r["look_by_shape"] for r in rows)
    assert capsys.readouterr().out.count("  look: shape ") == 14
    assert "| generation |" in (out / "eval.md").read_text() and (out / "samples.png").is_file()
    assert main([*args, "--no-text2video-zero", "--output-dir", str(tmp_path / "e2")]) == 0
    assert len(json.loads((tmp_path / "e2" / "eval.json").read_text())) == 11
    assert main(["world", "eval", "--models", str(tmp_path / "nothing"), "--output-dir", str(out)]) == 2


def test_world_probe_measures_each_word_swap_of_a_base(tmp_path, capsys, one_thread):
    from animatediff.cli import main
    from animatediff.world.probes import SCALINGS, SWAPS, _swapped, word_reliance
    from animatediff.world.scenes import SceneSpec
    from animatediff.world.train_image import build_base_model

    build_base_model(tmp_path / "build" / "base", quick_recipe().image)
    result = word_reliance(tmp_path / "build" / "base", images=8, timesteps=(100, 900))
    assert set(result) == {"true", *SWAPS}
    assert all(result["true"][t] > 0 for t in (100, 900))
    assert all(np.isfinite(result[k][t]) for k in SWAPS for t in (100, 900))
    spec = SceneSpec("square", "red", "blue", motion="left", amount=0.3, x=0.7)
    assert _swapped(spec, "direction") == "a red square moving right on a blue background"
    assert _swapped(spec, "motion") == "a red square on a blue background"
    growing = SceneSpec("square", "red", "blue", motion="growing", amount=1.8, size=0.1)
    assert _swapped(growing, "direction") == "a red square shrinking on a blue background"
    scalings = word_reliance(tmp_path / "build" / "base", images=4, timesteps=(100,), motions=SCALINGS)
    assert scalings["true"][100] != result["true"][100]  # renderings of other motions
    with pytest.raises(ValueError, match="opposite"):
        word_reliance(tmp_path / "build" / "base", images=4, motions=("bouncing",))
    assert main(["world", "probe", "--models", str(tmp_path / "build"), "--images", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("| direction |") == 2 and "renderings of growing and shrinking" in out
    assert main(["world", "probe", "--models", str(tmp_path / "nothing")]) == 2
    assert main(["world", "probe", "--models", str(tmp_path / "build"), "--motion-module"]) == 2


def test_world_probe_runs_whole_clips_through_base_and_motion_module(capsys, one_thread):
    from animatediff.cli import main
    from animatediff.world.layout import EMBEDDED as WORLD_ASSETS
    from animatediff.world.probes import SWAPS, word_reliance

    base, module = WORLD_ASSETS / "base", WORLD_ASSETS / "motion_module.safetensors"
    clips = word_reliance(base, images=4, timesteps=(300,), motion_module=module, frames=8)
    images = word_reliance(base, images=4, timesteps=(300,))
    assert all(np.isfinite(clips[k][300]) for k in SWAPS)
    # Different renderings (whole clips against single frames) give a different reference loss.
    assert clips["true"][300] > 0 and clips["true"][300] != images["true"][300]
    assert main(["world", "probe", "--images", "2", "--motion-module"]) == 0
    out = capsys.readouterr().out
    assert "| direction |" in out and "| stars |" not in out  # the VAE check goes with the base-only probe
    assert "clips of growing and shrinking" in out


def test_world_probe_reads_each_look_back_through_the_vae(capsys, one_thread):
    from animatediff.cli import main
    from animatediff.world.layout import EMBEDDED as WORLD_ASSETS
    from animatediff.world.probes import vae_round_trip

    result = vae_round_trip(WORLD_ASSETS / "base", WORLD_ASSETS / LOOK_CLASSIFIER, images=24)
    assert set(result) == {"base shapes", "stars", "outlines"}
    # The classifier reads the renderings themselves; the shipped VAE, trained on every look with the object
    # weighted, gives each look back (0.96 of each here, what the world README records) and close in pixels.
    assert all(r["rendered"] >= 0.9 for r in result.values())
    assert all(r["round trip"] >= 0.85 and r["mse"] < 0.01 for r in result.values())
    assert main(["world", "probe", "--images", "4"]) == 0
    out = capsys.readouterr().out
    assert "| base shapes |" in out and "| direction |" in out


def test_a_zero_terminal_snr_world_trains_samples_and_probes_as_v_prediction(tmp_path, one_thread):

    from animatediff.base_model import read_traits
    from animatediff.train.checks import check_zero_snr
    from animatediff.world.build import train_world_motion_module
    from animatediff.world.probes import word_reliance

    recipe = quick_recipe()
    recipe = replace(recipe, image=replace(recipe.image, unet=replace(recipe.image.unet, zero_terminal_snr=True)))
    figures = build_world(
        tmp_path, replace(recipe, personalized=(), motion_loras=replace(recipe.motion_loras, motions=()))
    )
    assert "motion" in figures
    config = json.loads((tmp_path / "base" / "scheduler" / "scheduler_config.json").read_text())
    assert config["prediction_type"] == "v_prediction" and config["rescale_betas_zero_snr"]
    assert read_traits(tmp_path / "base").zero_snr
    with pytest.raises(ValueError, match="needs a v-prediction base"):
        check_zero_snr(read_traits(tmp_path / "base", prediction_type="epsilon", zero_snr=True))
    pipe = AnimationPipeline.from_pretrained(tmp_path / "base", tmp_path / "motion_module.safetensors")
    assert pipe.scheduler.config.prediction_type == "v_prediction" and pipe.scheduler.config.rescale_betas_zero_snr
    assert np.isfinite(pipe("a red circle", num_frames=4, num_inference_steps=2, seed=0, progress=False)).all()
    result = word_reliance(tmp_path / "base", images=4, timesteps=(500, 999), motion_module=None)
    assert all(np.isfinite(result[k][t]) for k in result for t in (500, 999))
    # The motion stage reads the schedule from the base: a resumed run keeps it.
    again = train_world_motion_module(
        tmp_path / "base", tmp_path / "motion-run", replace(recipe.motion, steps=3), False
    )
    assert again.is_file()


def test_the_denoising_loss_targets_what_the_schedule_predicts():
    from types import SimpleNamespace

    from animatediff.world.base_model import official_scheduler
    from animatediff.world.train_unet import unet_loss

    class ZeroUnet:  # predicts zeros, so the loss is the target's mean square
        device = torch.device("cpu")

        def __call__(self, x, steps, text):
            return SimpleNamespace(sample=torch.zeros_like(x))

    latents, t, text = torch.randn(3, 4, 4, 4), torch.tensor([10, 500, 999]), torch.zeros(3, 77, 8)
    zero = ZeroUnet()
    for zero_snr in (False, True):
        scheduler = official_scheduler(zero_snr)
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
        target = scheduler.get_velocity(latents, noise, t) if zero_snr else noise
        loss = unet_loss(zero, latents, text, torch.Generator().manual_seed(0), t, scheduler)
        torch.testing.assert_close(loss, (target**2).mean())
    assert official_scheduler(True).alphas_cumprod[-1] < 1e-6 < official_scheduler().alphas_cumprod[-1]


def _stub_base(base):
    """A base folder holding only what a trainer config is made from: the UNet's and VAE's sizes (32 px)."""
    unet = {"sample_size": 8, "block_out_channels": [64, 128]}
    for folder, config in (("unet", unet), ("vae", {"block_out_channels": [32, 64, 64]})):
        (base / folder).mkdir(parents=True)
        (base / folder / "config.json").write_text(json.dumps(config))
    return base


def test_the_motion_and_motion_lora_stages_hand_their_noise_options_to_the_trainer(tmp_path, monkeypatch):
    import animatediff.world.build as build

    base = _stub_base(tmp_path / "base")
    configs = []
    clips = []

    def record(config, dataset, name):
        configs.append(config)
        clips.append(dataset)
        return tmp_path / name

    monkeypatch.setattr(build, "train_and_export", record)
    options = {"loss_weighting": "min_snr", "timestep_bias": "later", "timestep_bias_multiplier": 3.0}
    build.train_world_motion_module(base, tmp_path / "mm", build.MotionStage(**options), progress=False)
    build.train_world_motion_lora(
        base, tmp_path / "mm.safetensors", tmp_path / "lora", "right", build.MotionLoraStage(**options), progress=False
    )
    for config in configs:
        assert (config.optim.loss_weighting, config.optim.timestep_bias) == ("min_snr", "later")
        assert config.optim.timestep_bias_multiplier == 3.0 and config.data.resolution == 32
    assert configs[1].lora.enabled and clips[1].world.motions == ("right",)
    assert clips[0].world.motions == build.BASE_WORLD.motions and all(c.data.kind == "custom" for c in configs)


def test_an_images_only_build_is_measured_before_its_motion_stages_and_then_finished(tmp_path, one_thread):
    from animatediff.cli import main

    build = tmp_path / "build"
    assert main(["world", "build", str(build), "--quick", "--images-only", "--quiet"]) == 0
    assert not (build / "motion_module.safetensors").exists() and not (build / MOTION_LORAS).exists()
    assert all((build / name).is_file() for name in (*PERSONALIZED.values(), LOOK_CLASSIFIER))
    assert main(["world", "build", str(build), "--quick", "--images-only", "--ship", str(tmp_path / "assets")]) == 2
    with pytest.raises(FileNotFoundError, match="no motion module to ship"):
        ship(build, tmp_path / "assets")

    out = tmp_path / "eval"
    args = ["world", "eval", "--models", str(build), "--prompts", "2", "--seeds", "1", "--steps", "2"]
    assert main([*args, "--output-dir", str(out)]) == 0
    rows = json.loads((out / "eval.json").read_text())
    names = [r["name"] for r in rows]
    # Per model, independent frames and Text2Video-Zero; the base asked for each personalized look, frames independent.
    assert len(names) == 8 and len(set(names)) == 8
    assert not [n for n in names if "+ motion module" in n]
    assert "base, frames independent, asked for the star DreamBooth (single file)'s look (no personalization)" in names
    assert all(r["look_accuracy"] is not None for r in rows)

    # Without --images-only the build goes on from there: the motion stages run, the image stages are kept.
    kept = (build / PERSONALIZED["object"]).stat().st_mtime_ns
    figures = build_world(build, quick_recipe())
    assert (build / "motion_module.safetensors").is_file() and (build / MOTION_LORAS / "left.safetensors").is_file()
    assert (build / PERSONALIZED["object"]).stat().st_mtime_ns == kept
    assert {"base", "personalized", "looks", "motion", "motion_loras"} <= set(figures)


def test_a_recipe_takes_dotted_overrides_and_names_an_unknown_key():
    recipe = override_recipe(
        WorldRecipe(),
        ["image.vae.object_weight=10", "image.unet.steps=8000", "motion_loras.motions=[left, right]", "looks.lr=1e-3"],
    )
    assert recipe.image.vae.object_weight == 10.0 and isinstance(recipe.image.vae.object_weight, float)
    assert recipe.image.unet.steps == 8000 and recipe.motion_loras.motions == ("left", "right")
    assert recipe.looks.lr == 1e-3
    # Everything else is the default recipe, tuples of dataclasses included.
    assert recipe.personalized == WorldRecipe().personalized and recipe.image.model == WorldRecipe().image.model
    assert recipe.motion == WorldRecipe().motion
    with pytest.raises(
        ValueError, match=r"unknown recipe key 'image.vae.object_weigth'; did you mean 'image.vae.object_weight'"
    ):
        override_recipe(WorldRecipe(), ["image.vae.object_weigth=10"])
    with pytest.raises(ValueError, match="must be of type int"):
        override_recipe(WorldRecipe(), ["motion.steps=many"])


def test_world_build_set_reports_a_bad_key_in_one_line(tmp_path, capsys):
    from animatediff.cli import main

    assert main(["world", "build", str(tmp_path / "w"), "--quick", "--set", "motion.stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown recipe key 'motion.stepz'; did you mean 'motion.steps'" in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()


def test_motion_stages_over_the_fp16_base_rerun_from_shipped_assets_alone(tmp_path):
    """With `motion_over_fp16`, the motion module trains over the base as it ships, and the MotionLoRAs over the
    module as it ships, so a folder holding only the shipped base (and the image stages' other outputs) gives the
    same motion weights as the build from scratch."""
    import shutil

    from safetensors.torch import load_file

    recipe = override_recipe(quick_recipe(), ["motion_over_fp16=true"])
    build_world(tmp_path / "scratch", recipe)
    assets = ship(tmp_path / "scratch", tmp_path / "assets")
    again = tmp_path / "again"
    again.mkdir()
    shutil.copytree(assets / "base", again / "base")
    shutil.copytree(assets / "personalized", again / "personalized")
    shutil.copyfile(assets / LOOK_CLASSIFIER, again / LOOK_CLASSIFIER)
    build_world(again, recipe)
    unet = load_file(tmp_path / "scratch" / "base-fp16" / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(v.dtype == torch.float16 for v in unet.values())
    for name in ("motion_module.safetensors", f"{MOTION_LORAS}/left.safetensors"):
        first, second = load_file(tmp_path / "scratch" / name), load_file(again / name)
        assert first.keys() == second.keys()
        assert all(torch.equal(first[k], second[k]) for k in first), name


def test_a_build_records_what_its_bits_depend_on_and_needs_peft_before_its_first_stage(tmp_path, monkeypatch, capsys):
    import sys

    from animatediff.cli import main

    assert main(["world", "build", str(tmp_path / "w"), "--quick"]) == 0
    out = capsys.readouterr().out
    (env,) = json.loads((tmp_path / "w" / "build.json").read_text())["environments"]
    assert {"torch", "diffusers", "transformers", "numpy", "cpu_capability", "cpu", "threads"} <= set(env)
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["threads"] == 1
    assert f"CPU {env['cpu_capability']}" in out.splitlines()[0]

    monkeypatch.setitem(sys.modules, "peft", None)  # not installed
    assert main(["world", "build", str(tmp_path / "no-peft"), "--quick", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "needs peft, which is not installed: pip install 'animatediff[train]'" in err and "Traceback" not in err
    assert not (tmp_path / "no-peft").exists()  # refused before any stage
