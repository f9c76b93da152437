"""The prompt-config keys named after `generate`'s flags (`scheduler`, `lora_configs`, `context_length`,
`context_overlap`, `loop`, `free_noise`, `motion_scale`, `free_init_iters`): parsed, refused in one line before
anything loads, and drawing what the pipeline (and `generate`) draws with the same settings."""

import re

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

import animatediff.io.video
from animatediff.cli import main
from animatediff.formats import save_motion_modules
from animatediff.model_cache import ModelCache
from animatediff.pipeline import AnimationPipeline
from animatediff.prompt_config import load_prompt_config, run_prompt_config
from animatediff.sampling import ContextSchedule, FreeInit, make_scheduler
from animatediff.world.layout import EMBEDDED
from tests.cli_helpers import gif_frames
from tests.tiny import tiny_motion

ATTN = "down_blocks.0.attentions.0.transformer_blocks.0"


def _write(path, entries):  # noqa: ANN001, ANN202
    path.write_text(yaml.safe_dump(entries, sort_keys=False))
    return path


def _entry(tmp_path, **keys):  # noqa: ANN001, ANN202
    (entry,), _ = load_prompt_config(_write(tmp_path / "c.yaml", [{"motion_module": "m", "prompt": ["a"], **keys}]))
    return entry


def _image_lora(path, seed: int):  # noqa: ANN001, ANN202
    g = torch.Generator().manual_seed(seed)
    name = f"lora_unet_{ATTN}_attn1_to_q".replace(".", "_")
    down, up = torch.randn(4, 32, generator=g), torch.randn(32, 4, generator=g)
    save_file({f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up}, path)
    return path


def test_each_key_parses_and_unset_keys_keep_todays_behaviour(tmp_path):
    loras = [{"path": "a.safetensors", "alpha": 0.5}, {"path": "b.safetensors"}]
    entry = _entry(tmp_path, scheduler="euler-ancestral", lora_configs=loras, context_length=8, context_overlap=2,
                   free_init_iters=3)  # fmt: skip
    assert (entry.scheduler, entry.lora_configs) == ("euler-ancestral", loras)
    assert (entry.context_length, entry.context_overlap, entry.free_init_iters) == (8, 2, 3)
    assert _entry(tmp_path, scheduler="Euler_A").scheduler == "Euler_A"  # make_scheduler's aliases
    assert _entry(tmp_path, context_length=16).context_overlap == 4  # generate's --context-overlap default
    # prompt travel's top-level context_schedule, as generate's --context-schedule
    assert _entry(tmp_path, context_length=16, context_schedule="uniform").context_schedule == "uniform"
    for entry in (_entry(tmp_path), _entry(tmp_path, scheduler=None, context_length=None, free_init_iters=None)):
        assert (entry.scheduler, entry.lora_configs, entry.context_length) == ("", [], None)
        assert (entry.context_overlap, entry.free_init_iters) == (4, None)


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"scheduler": "eulr"}, "unknown scheduler 'eulr'; choose one of: ddim, ddpm, pndm, euler, euler-ancestral"),
        ({"scheduler": 3}, "scheduler must be a scheduler's name, got 3"),
        ({"scheduler": "ddim", "inference_config": "inference-v2.yaml"}, "give scheduler or inference_config, not"),
        ({"lora_configs": "a.safetensors"}, "lora_configs must be a list of {path, alpha} mappings"),
        ({"lora_configs": [{"path": "a", "alhpa": 1}]}, "lora_configs: unknown key 'alhpa'; did you mean 'alpha'"),
        ({"lora_configs": [{"path": "a", "alpha": "high"}]}, "lora_configs alpha must be a number, got 'high'"),
        ({"lora_config": []}, "unknown key 'lora_config'; did you mean 'lora_configs'"),
        ({"context_length": "16"}, "context length '16' must be a whole number of frames ≥ 1"),
        ({"context_length": 0}, "context length 0 must be a whole number of frames ≥ 1"),
        ({"context_length": 4, "context_overlap": 4}, "context overlap 4 must be from 0 to the context length − 1 (3)"),
        ({"context_length": 8, "context_overlap": 2.5}, "context overlap 2.5 must be from 0"),
        ({"context_overlap": 2}, "context_overlap needs context_length (the window's frames, e.g. 16)"),
        ({"free_init_iters": 0}, "free_init_iters: FreeInit iterations must be an integer of at least 1, got 0"),
        ({"free_init_iters": True}, "free_init_iters: FreeInit iterations must be an integer of at least 1"),
        ({"free_init_iters": 2, "video": "in.gif"}, "use strength 1 with FreeInit, or no FreeInit"),
        ({"loop": "yes"}, "loop must be true or false, got 'yes'"),
        ({"loop": True, "context_overlap": "2"}, "context overlap '2' must be a whole number of frames ≥ 0"),
        ({"motion_scale": -1}, "motion scale"),
        ({"free_noise": 1}, "free_noise must be true or false, got 1"),
        ({"free_noise": True, "loop": True}, "loop is for sliding context windows, which free_noise replaces"),
        ({"free_noise": True, "context_overlap": 2}, "context_overlap is for sliding context"),
        ({"free_noise": True, "context_length": 2}, "FreeNoise"),
        ({"motion_scale": "fast"}, "motion scale"),
        ({"context_length": 8, "context_schedule": "composite"}, "unknown context schedule 'composite'; expected"),
        ({"context_length": 8, "context_fuse": 3}, "context_fuse must be a name, got 3"),
        ({"context_length": 8, "context_stride": 2}, "context stride 2: only the 'uniform' schedule takes strides"),
        ({"context_stride": 2}, "context_stride needs context_length (the window's frames, e.g. 16) or loop"),
        ({"context_fuse": "flat"}, "context_fuse needs context_length"),
        ({"closed_loop": "yes"}, "closed_loop must be true or false, got 'yes'"),
        ({"free_noise": True, "context_schedule": "uniform"}, "context_schedule is for sliding context windows, which"),
        ({"loop": True, "context_schedule": "static"}, "loop: static windows never wrap; use context_schedule looped"),
    ],
)
def test_bad_values_fail_in_one_line_naming_the_entry(tmp_path, edit, message):
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        _entry(tmp_path, **edit)
    assert str(err.value).startswith("c.yaml entry 0: ") and "\n" not in str(err.value)


def test_cli_refuses_a_bad_key_before_loading_in_one_line(tmp_path, capsys):
    config = _write(tmp_path / "c.yaml", [{"motion_module": "m", "prompt": ["a"], "scheduler": "eulr"}])
    assert main(["run", str(config), "--output-dir", str(tmp_path / "s"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "c.yaml entry 0: unknown scheduler 'eulr'; choose one of: ddim" in err and err.count("\n") == 1


def test_a_missing_lora_configs_file_fails_before_loading(base_folder, tmp_path):
    config = _write(tmp_path / "c.yaml", [{"motion_module": "mm.safetensors", "prompt": ["a"],
                                           "lora_configs": [{"path": "loras/gone.safetensors"}]}])  # fmt: skip
    (tmp_path / "loras").mkdir()
    cache = ModelCache()
    with pytest.raises(FileNotFoundError, match="c.yaml entry 0: lora_configs 'loras/gone.safetensors' not found"):
        run_prompt_config(config, base_folder, tmp_path / "s", cache, progress=False)
    assert not cache.loads


def test_an_entry_with_every_key_draws_what_the_pipeline_draws(base_folder, tmp_path, monkeypatch, one_thread):
    """Euler ancestral (its step noise from the seed), 6 frames in static windows of 4 overlapping by 2, FreeInit
    twice, and three image LoRAs after lora_model_path: one of them the same file again, merged twice."""
    mm = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    first, second = _image_lora(tmp_path / "first.safetensors", 0), _image_lora(tmp_path / "second.safetensors", 1)
    entry = dict(motion_module=str(mm), prompt=["a fox"], n_prompt=["blurry"], seed=7, steps=2, L=6,
                 guidance_scale=7.5, lora_model_path="first.safetensors", lora_alpha=0.7,
                 lora_configs=[{"path": "second.safetensors", "alpha": 0.5}, {"path": "first.safetensors"}],
                 scheduler="euler-ancestral", context_length=4, context_overlap=2, free_init_iters=2)  # fmt: skip
    drawn, save_video = [], animatediff.io.video.save_video
    monkeypatch.setattr(animatediff.io.video, "save_video", lambda v, *a: drawn.append(v) or save_video(v, *a))
    cache = ModelCache()
    run_prompt_config(_write(tmp_path / "all.yaml", [entry]), base_folder, tmp_path / "s", cache, progress=False)
    assert cache.loads["lora"] == 2 and len(cache._pipe.loras.active) == 3  # the same file twice: merged twice

    ref = AnimationPipeline.from_pretrained(base_folder, mm, make_scheduler("euler-ancestral"))
    for path, scale in ((first, 0.7), (second, 0.5), (first, 1.0)):
        ref.add_lora(path, scale)
    call = dict(num_frames=6, num_inference_steps=2, guidance_scale=7.5, seed=7, progress=False)
    video = ref("a fox", "blurry", context=ContextSchedule(4, 2), free_init=FreeInit(iterations=2), **call)[0]
    assert drawn[0].shape == (6, 16, 16, 3) and np.array_equal(drawn[0], video)
    assert not np.array_equal(video, ref("a fox", "blurry", **call)[0])  # the windows and FreeInit changed it


def test_run_and_generate_draw_the_same_frames_of_the_embedded_world(tmp_path, one_thread):
    lora = EMBEDDED / "personalized" / "outlined_lora.safetensors"
    prompt = "a red circle moving right on a blue background"
    entry = dict(motion_module=str(EMBEDDED / "motion_module.safetensors"), prompt=[prompt], seed=3, steps=3, L=6,
                 lora_configs=[{"path": str(lora), "alpha": 0.8}], scheduler="dpm++-2m", context_length=4,
                 context_overlap=1, free_init_iters=2)  # fmt: skip
    config = _write(tmp_path / "world.yaml", [entry])
    assert main(["run", str(config), "--output-dir", str(tmp_path / "s"), "--quiet"]) == 0
    (ran,) = (tmp_path / "s").glob("world-*/sample/0-*.gif")
    flags = ["--prompt", prompt, "--seed", "3", "--steps", "3", "--frames", "6", "--lora", f"{lora}:0.8"]
    flags += ["--scheduler", "dpm++-2m", "--context-length", "4", "--context-overlap", "1", "--free-init", "2"]
    assert main(["generate", *flags, "--output", str(tmp_path / "g.gif"), "--quiet"]) == 0
    assert gif_frames(ran).shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(gif_frames(ran), gif_frames(tmp_path / "g.gif"))


@pytest.mark.parametrize(
    "keys, flags",
    [
        # generate's default loop windows for 12 frames: 6 overlapping by 3, looped; motion scale 1.3
        ({"loop": True, "motion_scale": 1.3}, ["--loop", "--motion-scale", "1.3"]),
        # FreeNoise over windows of 8 frames, 4 apart
        ({"free_noise": True, "context_length": 8}, ["--free-noise", "--context-length", "8"]),
        # uniform windows of 6 at strides 1 and 2, flat-fused, wrapping past the last frame
        (
            dict(
                context_length=6,
                context_overlap=2,
                context_schedule="uniform",
                context_stride=2,
                context_fuse="flat",
                closed_loop=True,
            ),
            "--context-length 6 --context-overlap 2 --context-schedule uniform --context-stride 2 --context-fuse flat "
            "--closed-loop".split(),
        ),  # fmt: skip
    ],
)
def test_loop_motion_scale_and_free_noise_entries_draw_what_generate_draws(tmp_path, one_thread, keys, flags):
    """A 12-frame entry with the keys, against `generate` with the flags, on the embedded world; both differ from
    the plain clip."""
    prompt = "a red circle moving right on a blue background"
    entry = dict(motion_module=str(EMBEDDED / "motion_module.safetensors"), prompt=[prompt], seed=3, steps=3, L=12,
                 **keys)  # fmt: skip
    config = _write(tmp_path / "keys.yaml", [entry])
    assert main(["run", str(config), "--output-dir", str(tmp_path / "s"), "--quiet"]) == 0
    (ran,) = (tmp_path / "s").glob("keys-*/sample/0-*.gif")
    plain = ["--prompt", prompt, "--seed", "3", "--steps", "3", "--frames", "12", "--quiet"]
    assert main(["generate", *plain, *flags, "--output", str(tmp_path / "g.gif")]) == 0
    np.testing.assert_array_equal(gif_frames(ran), gif_frames(tmp_path / "g.gif"))
    assert main(["generate", *plain, "--output", str(tmp_path / "plain.gif")]) == 0
    assert not np.array_equal(gif_frames(ran), gif_frames(tmp_path / "plain.gif"))
