import re

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageSequence
from safetensors.torch import save_file

from animatediff.base_model import load_base
from animatediff.cli import main
from animatediff.formats import save_motion_modules
from animatediff.formats.motion_lora import save_motion_lora
from animatediff.io.video import save_video
from animatediff.model_cache import ModelCache
from animatediff.pipeline import AnimationPipeline
from animatediff.prompt_config import load_prompt_config, run_prompt_config, sample_name
from tests.tiny import tiny_motion

ATTN = "down_blocks.0.attentions.0.transformer_blocks.0"
LONG = "a/b city at night with many lights shining over the bay right now"


@pytest.fixture
def assets(tmp_path):
    g = torch.Generator().manual_seed(0)
    save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    name = f"lora_unet_{ATTN}_attn1_to_q".replace(".", "_")
    lora = {f"{name}.lora_down.weight": torch.randn(4, 32, generator=g), f"{name}.lora_up.weight": torch.randn(32, 4)}
    save_file(lora, tmp_path / "style.safetensors")
    target = "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_k.weight"
    save_motion_lora({target: (torch.randn(4, 64, generator=g), torch.randn(64, 4))}, tmp_path / "pan.safetensors")
    return tmp_path


def _write(path, entries) -> str:  # noqa: ANN001
    path.write_text(yaml.safe_dump(entries, sort_keys=False))
    return path


def _two_entries(assets) -> list[dict]:  # noqa: ANN001
    common = dict(motion_module=str(assets / "mm.safetensors"), steps=1, guidance_scale=7.5, L=2)
    return [
        dict(
            lora_model_path="style.safetensors",
            lora_alpha=0.7,
            seed=[5, -1],
            prompt=["a fox runs", LONG],
            n_prompt=["blurry"],
            **common,
        ),  # fmt: skip
        dict(
            motion_module_lora_configs=[{"path": "pan.safetensors", "alpha": 0.5}],
            seed=9,
            prompt=["a boat"],
            n_prompt=[""],
            inference_config="configs/inference/inference-v2.yaml",
            **common,
        ),  # fmt: skip
    ]


def _frames(path) -> np.ndarray:  # noqa: ANN001
    return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(path))])


def test_two_entries_three_prompts_official_layout_and_one_base_load(assets, base_folder, tmp_path):
    config = _write(assets / "my-config.yaml", _two_entries(assets))  # relative LoRA paths: beside the config
    cache = ModelCache()
    out = run_prompt_config(config, base_folder, tmp_path / "samples", cache, progress=False)

    assert out.parent == tmp_path / "samples" and out.name.startswith("my-config-")
    words = "ab-city-at-night-with-many-lights-shining-over-the"  # first ten words, slash removed
    assert sorted(p.name for p in (out / "sample").iterdir()) == ["0-a-fox-runs.gif", f"1-{words}.gif", "2-a-boat.gif"]
    assert Image.open(out / "sample.gif").size == (3 * 16, 16) and Image.open(out / "sample.gif").n_frames == 2
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved[0]["random_seed"][0] == 5 and saved[1]["random_seed"] == [9]
    assert isinstance(saved[0]["random_seed"][1], int) and saved[0]["random_seed"][1] != -1
    assert saved[0]["prompt"] == ["a fox runs", LONG]  # the rest of the config as given

    # The base and the motion module were read once; switching entries only swapped LoRAs.
    assert cache.loads == {"base": 1, "motion_module": 1, "lora": 2}
    pipe = cache.pipeline(_spec(assets, base_folder))  # entry 2 again: nothing to load
    assert cache.loads["base"] == 1 and pipe.loras.active == {f"motion:{assets / 'pan.safetensors'}": 0.5}
    # Unmerging the image LoRA restored the UNet exactly.
    fresh = load_base(base_folder).unet.state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in pipe.unet.unet.state_dict().items())

    # The first video is what the library draws with the same model, LoRA and seed.
    ref = AnimationPipeline.from_pretrained(base_folder, assets / "mm.safetensors")
    ref.add_lora(assets / "style.safetensors", 0.7)
    video = ref("a fox runs", "blurry", num_frames=2, num_inference_steps=1, seed=5, progress=False)[0]
    np.testing.assert_array_equal(
        _frames(out / "sample" / "0-a-fox-runs.gif"), _frames(save_video(video, tmp_path / "r.gif"))
    )


def _spec(assets, base_folder):  # noqa: ANN001, ANN202
    from animatediff.model_cache import PipelineSpec

    loras = (("motion", str(assets / "pan.safetensors"), 0.5),)
    return PipelineSpec(str(base_folder), str(assets / "mm.safetensors"), loras=loras)


def test_v1_mapping_form_with_motion_module_list_and_path_alias(assets, base_folder, tmp_path):
    mm2 = save_motion_modules(tiny_motion("v3", seed=4), assets / "mm2.safetensors")
    modules = [str(assets / "mm.safetensors"), str(mm2)]
    entry = {"base": "", "path": "", "motion_module": modules, "seed": 3, "steps": 1, "L": 2, "prompt": ["a", "b"]}
    config = _write(assets / "v1.yaml", {"Toon": entry})
    cache = ModelCache()
    out = run_prompt_config(config, base_folder, tmp_path, cache, progress=False)
    assert sorted(p.name for p in (out / "sample").iterdir()) == ["0-a.gif", "1-b.gif", "2-a.gif", "3-b.gif"]
    assert cache.loads == {"base": 1, "motion_module": 2}
    assert yaml.safe_load((out / "config.yaml").read_text())["Toon"]["random_seed"] == [3, 3, 3, 3]


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"gudance_scale": 8.0}, "unknown key 'gudance_scale'; did you mean 'guidance_scale'"),
        ({"lora_modle_path": "x"}, "did you mean 'lora_model_path'"),
        ({"seed": [1, 2, 3]}, "3 seed values for 2 prompts"),
        ({"n_prompt": ["a", "b", "c"]}, "3 n_prompt values for 2 prompts"),
        ({"seed": "7"}, "seed must be an integer"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"controlnet_path": "x"}, "controlnet_images must be a path or a list of paths"),
        ({"controlnet_images": ["a.png"]}, "controlnet_images without controlnet_path"),
        (
            {"controlnet_path": "x", "controlnet_images": ["a", "b"], "controlnet_image_indexs": [0]},
            r"controlnet_image_indexs \[0\] has 1 frames for 2 controlnet_images",
        ),
        ({"prompt": []}, "'prompt' is required"),
        ({"motion_module_lora_configs": [{"path": "p", "alpah": 1}]}, "unknown key 'alpah'; did you mean 'alpha'"),
        ({"motion_module_lora_configs": [{"path": "p", "alpha": "high"}]}, "alpha must be a number"),
    ],
)
def test_bad_configs_name_the_problem(assets, edit, message):
    entry = {"motion_module": "mm.safetensors", "prompt": ["a", "b"], **edit}
    with pytest.raises(ValueError, match=message):
        load_prompt_config(_write(assets / "bad.yaml", [entry]))


def test_cli_run_writes_the_layout_and_reports_bad_configs(assets, base_folder, tmp_path, capsys):
    config = _write(assets / "cli.yaml", _two_entries(assets)[1:])
    assert main(["run", str(config), "--base", str(base_folder), "--output-dir", str(tmp_path / "s"), "--quiet"]) == 0
    (out,) = (tmp_path / "s").iterdir()
    assert (out / "sample" / "0-a-boat.gif").is_file() and (out / "sample.gif").is_file()
    bad = _write(assets / "typo.yaml", [{"motion_module": "m", "prompt": ["x"], "stpes": 3}])
    assert main(["run", str(bad), "--base", str(base_folder)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'stpes'; did you mean 'steps'" in err and "Traceback" not in err


def test_sample_name_matches_the_official_rule():
    assert sample_name("a / b c") == "a--b-c"
    assert sample_name(" ".join(str(i) for i in range(12))) == "0-1-2-3-4-5-6-7-8-9"


OFFICIAL_V2_MOTION_LORA = """\
- inference_config: "configs/inference/inference-v2.yaml"
  motion_module:    "models/Motion_Module/mm_sd_v15_v2.ckpt"

  motion_module_lora_configs:
    - path:  "models/MotionLoRA/v2_lora_ZoomIn.ckpt"
      alpha: 1.0

  dreambooth_path: "models/DreamBooth_LoRA/realisticVision.safetensors"
  lora_model_path: ""

  seed:           [13100322578370451493]
  steps:          1
  guidance_scale: 7.5
  L: 2

  prompt:
    - "photo of coastline, rocks, storm weather, wind, waves, lightning, 8k uhd, dslr, soft lighting"

  n_prompt:
    - "blur, haze, deformed iris, deformed pupils, semi-realistic, cgi, 3d, render, sketch, cartoon"
"""
INFERENCE_V2 = """\
unet_additional_kwargs:
  use_inflated_groupnorm: true
  motion_module_mid_block: true
noise_scheduler_kwargs:
  num_train_timesteps: 1000
  beta_start: 0.00085
  beta_end: 0.0125
  beta_schedule: "linear"
  steps_offset: 1
  clip_sample: false
"""


def test_an_official_config_runs_unchanged_from_the_repo_root(base_folder, tokenizer, tmp_path, monkeypatch):
    """The official file layout (models/…, configs/inference/…), a 64-bit seed, a .ckpt MotionLoRA, a checkpoint."""
    from tests.ldm_checkpoint import save_ldm_checkpoint
    from tests.tiny import tiny_text_encoder, tiny_unet, tiny_vae

    monkeypatch.chdir(tmp_path)
    for folder in ("configs/prompts", "configs/inference", "models/Motion_Module", "models/MotionLoRA",
                   "models/DreamBooth_LoRA"):  # fmt: skip
        (tmp_path / folder).mkdir(parents=True)
    save_motion_modules(tiny_motion("v2"), "models/Motion_Module/mm_sd_v15_v2.ckpt")
    target = "up_blocks.1.motion_modules.2.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_out.0.weight"
    save_motion_lora({target: (torch.randn(4, 32), torch.randn(32, 4))}, "models/MotionLoRA/v2_lora_ZoomIn.ckpt")
    save_ldm_checkpoint("models/DreamBooth_LoRA/realisticVision.safetensors", tiny_unet(seed=5), tiny_vae(seed=6),
                        tiny_text_encoder(len(tokenizer), 7))  # fmt: skip
    (tmp_path / "configs/inference/inference-v2.yaml").write_text(INFERENCE_V2)
    (tmp_path / "configs/prompts/v2-2-MotionLoRA.yaml").write_text(OFFICIAL_V2_MOTION_LORA)

    cache = ModelCache()
    out = run_prompt_config("configs/prompts/v2-2-MotionLoRA.yaml", base_folder, "samples", cache, progress=False)
    assert out.parent.resolve() == tmp_path / "samples" and out.name.startswith("v2-2-MotionLoRA-")
    assert [p.name for p in (out / "sample").iterdir()] == [
        "0-photo-of-coastline,-rocks,-storm-weather,-wind,-waves,-lightning,-8k.gif"
    ]
    assert yaml.safe_load((out / "config.yaml").read_text())[0]["random_seed"] == [13100322578370451493]
    pipe = cache._pipe
    assert pipe.scheduler.config.beta_end == 0.0125  # from the inference config
    assert cache.loads == {"base": 1, "dreambooth": 1, "motion_module": 1, "lora": 1}
    assert list(pipe.loras.active.values()) == [1.0]


def test_a_missing_local_file_fails_before_loading(assets, base_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(assets)
    (assets / "models" / "MotionLoRA").mkdir(parents=True)
    entries = _two_entries(assets)
    entries[1]["motion_module_lora_configs"] = [{"path": "models/MotionLoRA/v2_lora_PanLeft.ckpt", "alpha": 1.0}]
    cache = ModelCache()
    with pytest.raises(FileNotFoundError, match=r"entry 1: motion_module_lora_configs 'models/MotionLoRA/v2_lora_P"):
        run_prompt_config(_write(assets / "c.yaml", entries), base_folder, tmp_path, cache, progress=False)
    assert not cache.loads


def test_an_interrupted_run_keeps_its_whole_gifs_and_their_seeds(assets, base_folder, tmp_path, monkeypatch):
    """Interrupted while drawing the second video: the first GIF, and config.yaml with every video's seed (drawn
    before the first), nothing partial."""
    decode, calls = AnimationPipeline.decode, []

    def interrupted_second(self, *args, **kwargs):  # noqa: ANN001
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return decode(self, *args, **kwargs)

    monkeypatch.setattr(AnimationPipeline, "decode", interrupted_second)
    entries = _two_entries(assets)
    entries[0]["seed"] = [-1, 5]
    with pytest.raises(KeyboardInterrupt):
        run_prompt_config(_write(assets / "c.yaml", entries), base_folder, tmp_path / "s", progress=False)
    (out,) = (tmp_path / "s").iterdir()
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "config.yaml",
        "sample",
        "sample/0-a-fox-runs.gif",
    ]
    assert Image.open(out / "sample" / "0-a-fox-runs.gif").n_frames == 2
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved[0]["random_seed"][0] != -1 and saved[0]["random_seed"][1] == 5
    assert len(saved[1]["random_seed"]) == len(entries[1]["prompt"])


def test_an_output_root_that_cannot_be_written_fails_before_loading(assets, base_folder, tmp_path):
    (tmp_path / "taken").write_text("a file")
    cache = ModelCache()
    with pytest.raises(ValueError, match="taken is a file, not a folder"):
        run_prompt_config(_write(assets / "c.yaml", _two_entries(assets)), base_folder, tmp_path / "taken", cache)
    assert not cache.loads


def test_a_prompt_map_entry_draws_one_travelling_video_beside_plain_ones(assets, base_folder, tmp_path, one_thread):
    """animatediff-cli-prompt-travel's entry form: prompt_map with string frames, head and tail joined by ','."""
    mm = str(assets / "mm.safetensors")
    travel = dict(
        motion_module=mm,
        steps=1,
        guidance_scale=7.5,
        L=4,
        seed=[11],
        head_prompt="a fox",
        prompt_map={"0": "runs left", "3": "jumps"},
        tail_prompt="at night",
        n_prompt=["blurry"],
        prompt_interpolation="slerp",
    )
    config = _write(assets / "travel.yaml", [travel, dict(motion_module=mm, steps=1, L=4, seed=2, prompt=["a boat"])])
    out = run_prompt_config(config, base_folder, tmp_path / "s", ModelCache(), progress=False)

    assert sorted(p.name for p in (out / "sample").iterdir()) == ["0-a-fox,runs-left,at-night.gif", "1-a-boat.gif"]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved[0]["random_seed"] == [11] and saved[0]["prompt_map"] == {"0": "runs left", "3": "jumps"}
    ref = AnimationPipeline.from_pretrained(base_folder, mm)
    keyframes = {0: "a fox,runs left,at night", 3: "a fox,jumps,at night"}
    video = ref(keyframes, "blurry", num_frames=4, num_inference_steps=1, guidance_scale=7.5, seed=11,
                prompt_interpolation="slerp", progress=False)[0]  # fmt: skip
    np.testing.assert_array_equal(
        _frames(out / "sample" / "0-a-fox,runs-left,at-night.gif"), _frames(save_video(video, tmp_path / "r.gif"))
    )


PROMPT_TRAVEL_JSON = """\
{
  "name": "sample",
  "path": "",
  "motion_module": "mm.safetensors",
  "tensor_interpolation_slerp": true,
  "seed": [341774366206100],
  "steps": 1,
  "guidance_scale": 7.5,
  "head_prompt": "masterpiece",
  "prompt_map": {"0": "smile standing", "1": "walking"},
  "tail_prompt": "",
  "n_prompt": ["worst quality"]
}
"""


def test_cli_runs_a_prompt_travel_config_file_itself(assets, base_folder, tmp_path, capsys, one_thread):
    config = assets / "prompt_travel.json"
    config.write_text(PROMPT_TRAVEL_JSON)
    (entry,), _ = load_prompt_config(config)
    assert entry.name == "sample" and entry.prompt_interpolation == "slerp" and entry.prompt == []
    assert entry.prompts == [{0: "masterpiece,smile standing", 1: "masterpiece,walking"}]
    args = ["run", str(config), "--base", str(base_folder), "--output-dir", str(tmp_path / "s"), "--L", "2", "--quiet"]
    assert main(args) == 0
    (out,) = (tmp_path / "s").iterdir()
    assert [p.name for p in (out / "sample").iterdir()] == ["0-masterpiece,smile-standing.gif"]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["random_seed"] == [341774366206100] and saved["prompt_map"]["1"] == "walking"

    # A keyframe beyond the clip fails in one line before any model loads.
    assert main([*args[:-3], "--L", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "prompt_travel.json entry sample: prompt_map: prompt keyframe 1 is beyond the clip's last frame, 0" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"prompt": ["x"]}, "give 'prompt' (one video each) or 'prompt_map' (one travelling video), not both"),
        ({"prompt_map": {"x": "a"}}, "prompt_map: frame 'x' is not a non-negative integer"),
        ({"prompt_map": {}}, "prompt_map is empty"),
        ({"prompt_map": ["a", "b"]}, "expected a mapping of frame → prompt, got list"),
        ({"seed": [1, 2, 3]}, "3 seed values for a prompt_map, which draws one video (give 1)"),
        ({"n_prompt": ["a", "b"]}, "2 n_prompt values for a prompt_map"),
        ({"lora_map": {"a.safetensors": "strong"}}, "lora_map 'a.safetensors': the scale must be one number"),
        ({"prompt_interpolation": "cubic"}, "prompt_interpolation 'cubic': choose one of linear, slerp, none"),
        ({"tensor_interpolation_slerp": "yes"}, "tensor_interpolation_slerp must be true or false"),
        ({"head_prompt": 3}, "head_prompt must be a string"),
        ({"promt_map": {"0": "a"}}, "unknown key 'promt_map'; did you mean 'prompt_map'"),
    ],
)
def test_bad_prompt_maps_name_the_problem(assets, edit, message):
    entry = {"motion_module": "mm.safetensors", "prompt_map": {"0": "a", "8": "b"}, **edit}
    with pytest.raises(ValueError, match=re.escape(message)):
        load_prompt_config(_write(assets / "bad.yaml", [entry]))


def test_a_keyframe_beyond_the_clip_fails_before_loading(assets, base_folder, tmp_path):
    entry = {"motion_module": str(assets / "mm.safetensors"), "prompt_map": {0: "a", 20: "b"}}
    config = _write(assets / "c.yaml", [entry])
    cache = ModelCache()
    with pytest.raises(ValueError, match="entry 0: prompt_map: prompt keyframe 20 is beyond the clip's last frame, 15"):
        run_prompt_config(config, base_folder, tmp_path, cache, progress=False)
    assert not cache.loads
    assert load_prompt_config(config)[0][0].prompt_interpolation == "linear"  # diffusers' default
