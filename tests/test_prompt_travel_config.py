"""animatediff-cli-prompt-travel config files run as written: lora_map, motion_lora_map, clip_skip, vae_path,
prompt_fixed_ratio and output read as ours, sections that ask for nothing dropped, what we do not draw refused in
one line, prompt-travel's defaults for its own documents."""

import json
import re

import numpy as np
import pytest
from PIL import Image, ImageSequence

from animatediff.cli import main
from animatediff.io.video import to_uint8
from animatediff.model_cache import ModelCache
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.prompt_travel import held_keyframes
from animatediff.prompt_config import run_prompt_config
from animatediff.prompt_entries import load_prompt_config
from tests.test_prompt_config import assets  # noqa: F401 - the fixture: a motion module, a LoRA, a MotionLoRA

OFF = {"enable": False}


def document(**keys) -> dict:  # noqa: ANN003
    """A prompt-travel config as its templates write one: every section present, the extras switched off."""
    return {
        "name": "sample",
        "path": "",
        "motion_module": "mm.safetensors",
        "compile": False,
        "seed": [7],
        "scheduler": "ddim",
        "steps": 2,
        "guidance_scale": 7.5,
        "unet_batch_size": 1,
        "clip_skip": 2,
        "head_prompt": "masterpiece",
        "prompt_map": {"0": "a fox", "3": "a boat"},
        "tail_prompt": "",
        "n_prompt": ["blurry"],
        "is_single_prompt_mode": False,
        "lora_map": {"style.safetensors": 0.7},
        "motion_lora_map": {"pan.safetensors": 0.5},
        "ip_adapter_map": {**OFF, "input_image_dir": "ip_adapter_image/test", "scale": 0.5, "is_plus": True},
        "img2img_map": {**OFF, "init_img_dir": "..\\data\\initial_image", "denoising_strength": 0.7},
        "region_map": {},
        "controlnet_map": {
            "input_image_dir": "controlnet_image/test",
            "max_samples_on_vram": 200,
            "is_loop": True,
            "controlnet_tile": {**OFF, "controlnet_conditioning_scale": 1.0},
            "controlnet_openpose": {**OFF, "use_preprocessor": True},
        },
        "upscale_config": {"scheduler": "ddim", "steps": 20, "strength": 0.5, "controlnet_tile": {"enable": True}},
        "output": {"format": "webp", "fps": 12, "encode_param": {"crf": 10}},
        **keys,
    }


ON = {"enable": True, "controlnet_conditioning_scale": 1.0, "control_guidance_start": 0.0, "control_guidance_end": 1.0,
      "control_scale_list": []}  # fmt: skip


def _frames(path) -> np.ndarray:  # noqa: ANN001
    return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(path))])


def test_a_prompt_travel_document_reads_as_our_entry(assets):  # noqa: F811
    config = assets / "prompt_travel.json"
    config.write_text(json.dumps(document()))
    (entry,), _ = load_prompt_config(config)
    assert entry.lora_configs == [{"path": "style.safetensors", "alpha": 0.7}]
    assert entry.motion_module_lora_configs == [{"path": "pan.safetensors", "alpha": 0.5}]
    assert (entry.clip_skip, entry.output_format, entry.fps) == (2, "webp", 12)
    # prompt-travel reads A1111's emphasis and prompts past 75 tokens (its long-prompt-weighting encoder)
    assert (entry.prompt_weighting, entry.long_prompts) == ("a1111", "chunks")
    config.write_text(json.dumps(document(prompt_weighting="none", long_prompts="truncate")))
    (plain,), _ = load_prompt_config(config)
    assert (plain.prompt_weighting, plain.long_prompts) == ("none", "truncate")  # what the document says wins
    # prompt-travel's own defaults: slerp, and each prompt held for half the gap (round(1.5) = 2)
    assert entry.prompt_interpolation == "slerp" and entry.prompt_fixed_ratio == 0.5
    assert entry.prompts == [{0: "masterpiece,a fox", 2: "masterpiece,a fox", 3: "masterpiece,a boat"}]
    # and its keyframes go round: the last is held for half the gap to the clip's end, then travels to the first
    assert entry.prompt_travel_loop is True
    assert entry.clip_prompts(9)[0] == {**entry.prompts[0], 6: "masterpiece,a boat"}
    assert entry.keyframe_controlnets == []  # its ControlNets all switched off
    controls = {
        "input_image_dir": "controlnet_image/test",
        "is_loop": False,
        "max_samples_on_vram": 200,
        "controlnet_openpose": {
            **ON,
            "use_preprocessor": False,
            "controlnet_conditioning_scale": 0.8,
            "control_scale_list": [0.5, 0.25],
            "guess_mode": True,
        },
        "controlnet_canny": {**ON, "control_guidance_end": 0.5},
        "controlnet_tile": {"enable": False},
        "controlnet_lineart": {**ON, "preprocessor": {"type": "lineart_standard"}},  # the model-free line art
    }
    config.write_text(json.dumps(document(controlnet_map=controls)))
    (entry,), _ = load_prompt_config(config)
    assert entry.keyframe_controlnets == [
        {"model": "lllyasviel/control_v11p_sd15_openpose", "images": "controlnet_image/test/controlnet_openpose",
         "scale": 0.8, "start": 0.0, "end": 1.0, "guess_mode": True, "spread": [0.5, 0.25], "loop": False,
         "annotator": "none", "regions": []},
        {"model": "lllyasviel/control_v11p_sd15_canny", "images": "controlnet_image/test/controlnet_canny",
         "scale": 1.0, "start": 0.0, "end": 0.5, "guess_mode": False, "spread": [], "loop": False,
         "annotator": "canny", "regions": []},
        {"model": "lllyasviel/control_v11p_sd15_lineart", "images": "controlnet_image/test/controlnet_lineart",
         "scale": 1.0, "start": 0.0, "end": 1.0, "guess_mode": False, "spread": [], "loop": False,
         "annotator": "lineart", "regions": []},
    ]  # fmt: skip


def test_an_official_entry_keeps_our_defaults(assets):  # noqa: F811
    config = assets / "c.json"
    config.write_text(json.dumps([{"motion_module": "mm.safetensors", "prompt_map": {"0": "a", "3": "b"}}]))
    (entry,), _ = load_prompt_config(config)
    assert entry.prompt_interpolation == "linear" and entry.prompt_fixed_ratio == 0 and not entry.prompt_travel_loop
    assert entry.prompts == [{0: "a", 3: "b"}]


def test_the_document_draws_what_the_pipeline_draws_with_the_same_settings(assets, base_folder, tmp_path, one_thread):  # noqa: F811
    config = assets / "prompt_travel.json"
    config.write_text(json.dumps(document()))
    out = run_prompt_config(config, base_folder, tmp_path / "s", ModelCache(), frames=4, progress=False)
    (written,) = (out / "sample").iterdir()
    first = Image.open(written)
    first.load()
    assert written.suffix == ".webp" and first.info["duration"] == round(1000 / 12)

    ref = AnimationPipeline.from_pretrained(base_folder, assets / "mm.safetensors", "ddim")
    ref.add_lora(assets / "style.safetensors", 0.7)
    ref.add_lora(assets / "pan.safetensors", 0.5, kind="motion")
    prompt = {0: "masterpiece,a fox", 2: "masterpiece,a fox", 3: "masterpiece,a boat"}
    video = ref(prompt, "blurry", num_frames=4, num_inference_steps=2, guidance_scale=7.5, seed=7, clip_skip=2,
                prompt_interpolation="slerp", progress=False)[0]  # fmt: skip
    np.testing.assert_array_equal(_frames(written), to_uint8(video))
    plain = ref(prompt, "blurry", num_frames=4, num_inference_steps=2, guidance_scale=7.5, seed=7,
                prompt_interpolation="slerp", progress=False)[0]  # fmt: skip
    assert np.abs(plain - video).max() > 1e-3  # clip skip 2 took effect


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"ip_adapter_map": {"enable": True}}, "ip_adapter_map needs input_image_dir, the folder of images named"),
        (
            {"ip_adapter_map": {"enable": True, "input_image_dir": "ip", "is_plus": True}},
            "ip_adapter_map draws with ip-adapter-plus_sd15 (h94/IP-Adapter); give its file as ip_adapter",
        ),
        (
            {"ip_adapter_map": {"enable": True, "input_image_dir": "ip", "prompt_fixed_ratio": 2}, "ip_adapter": "a"},
            "ip_fixed_ratio must be a number from 0 to 1, got 2",
        ),
        ({"img2img_map": {"enable": True}}, "img2img_map needs init_img_dir, the folder of frames to start from"),
        ({"img2img_map": {"enable": True, "init_img_dir": "f"}, "video": "v.mp4"}, "give video or img2img_map, not"),
        ({"lcm_map": {"enable": True}}, "lcm_map ramps the LCM LoRA"),
        ({"lcm_map": {"enable": True, "strength": 1}, "lcm_lora": "l.safetensors"}, "lcm_map: 'strength' is not read"),
        ({"gradual_latent_hires_fix_map": {"enable": True, "scale": {"0": 0.5}}}, "last gradual latent scale must"),
        ({"compile": True}, "compile turns on compiling per entry (pass run's --compile instead)"),
        ({"apply_lcm_lora": True}, "apply_lcm_lora turns on the LCM LoRA switch"),
        ({"is_single_prompt_mode": True}, "is_single_prompt_mode turns on single-prompt mode"),
        (
            {"region_map": {"0": {"enable": True, "mask_dir": "m", "is_init_img": True}}},
            "keep_background) needs a video",
        ),
        ({"controlnet_map": {"controlnet_openpose": {"enable": True}}}, "controlnet_map needs input_image_dir"),
        ({"controlnet_map": {"input_image_dir": "c", "controlnet_openpose": {**ON}}}, "preprocessor 'dwpose' needs a"),
        (
            {"controlnet_map": {"input_image_dir": "c", "controlnet_canny": {**ON, "control_region_list": ["0"]}}},
            "control_region_list ['0']: name the region_map's regions switched on, or background",
        ),
        ({"controlnet_map": {"controlnet_ref": {"enable": True}}}, "controlnet_ref needs ref_image"),
        ({"controlnet_map": {"input_image_dir": "c", "animatediff_controlnet": {**ON}}}, "not one of the ControlNets"),
        (
            {"controlnet_map": {"input_image_dir": "c", "controlnet_tile": {"enable": True}}},
            "controlnet_tile: controlnet_conditioning_scale is missing",
        ),
        ({"lora_map": {"a.safetensors": {"scale": {"0": 0.5}}}}, "lora_map 'a.safetensors': a {region, scale} value"),
        ({"lora_map": {"a.safetensors": [0.5]}}, "lora_map 'a.safetensors': the scale must be one number"),
        ({"motion_lora_map": ["a.ckpt"]}, "motion_lora_map must be a mapping"),
        ({"output": {"format": "vp9"}}, "output format 'vp9': choose one of gif, mp4, h264, webp"),
        ({"output": {"fps": 0}}, "fps must be a positive number"),
        ({"clip_skip": 0}, "clip_skip: clip skip must be a whole number from 1"),
        ({"prompt_fixed_ratio": 1.5}, "prompt_fixed_ratio must be a number from 0 to 1"),
        ({"prompt_travel_loop": "yes"}, "prompt_travel_loop must be true or false"),
        ({"vae_path": 3}, "vae_path must be a path"),
        ({"prompt_weighting": "compel"}, "prompt_weighting 'compel': choose one of none, a1111, comfy"),
        ({"long_prompts": "wrap"}, "long_prompts 'wrap': choose one of truncate, chunks"),
    ],
)
def test_what_is_not_drawn_here_is_one_line_before_loading(assets, edit, message):  # noqa: F811
    config = assets / "prompt_travel.json"
    config.write_text(json.dumps(document(**edit)))
    with pytest.raises(ValueError, match=re.escape(message)):
        load_prompt_config(config)


def test_cli_refuses_an_enabled_section_in_one_line(assets, base_folder, tmp_path, capsys):  # noqa: F811
    config = assets / "prompt_travel.json"
    config.write_text(json.dumps(document(apply_lcm_lora=True)))
    assert main(["run", str(config), "--base", str(base_folder), "--output-dir", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "apply_lcm_lora turns on the LCM LoRA switch" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "ratio, expected",
    [
        (0.0, {0: "a", 8: "b", 16: "c"}),
        (0.5, {0: "a", 4: "a", 8: "b", 12: "b", 16: "c"}),
        (1.0, {0: "a", 7: "a", 8: "b", 15: "b", 16: "c"}),
        (0.25, {0: "a", 2: "a", 8: "b", 10: "b", 16: "c"}),
    ],
)
def test_held_keyframes_hold_each_prompt_for_its_part_of_the_gap(ratio, expected):
    assert held_keyframes({0: "a", 8: "b", 16: "c"}, ratio) == expected
    assert held_keyframes({0: "a", 1: "b"}, ratio) == {0: "a", 1: "b"}  # no frame between to hold


def _numbered_frames(folder, numbers, seed: int = 0):  # noqa: ANN001, ANN202
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for n in numbers:
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{n:08d}.png")
    return folder


def test_img2img_map_is_video_to_video_from_its_folder(assets, base_folder, tmp_path, one_thread):  # noqa: F811
    frames = _numbered_frames(assets / "init", range(4))  # prompt-travel's own names: 00000000.png, …
    img2img = {"enable": True, "init_img_dir": "init", "save_init_image": True, "denoising_strength": 0.6}
    config = assets / "prompt_travel.json"
    config.write_text(json.dumps(document(img2img_map=img2img, lora_map={}, motion_lora_map={}, clip_skip=1)))
    (entry,), _ = load_prompt_config(config)
    assert (entry.video, entry.strength) == ("init", 0.6)
    out = run_prompt_config(config, base_folder, tmp_path / "s", ModelCache(), frames=4, progress=False)
    (written,) = (out / "sample").iterdir()

    ref = AnimationPipeline.from_pretrained(base_folder, assets / "mm.safetensors", "ddim")
    prompt = {0: "masterpiece,a fox", 2: "masterpiece,a fox", 3: "masterpiece,a boat"}
    video = ref(prompt, "blurry", num_frames=4, num_inference_steps=2, guidance_scale=7.5, seed=7, video=frames,
                strength=0.6, prompt_interpolation="slerp", progress=False)[0]  # fmt: skip
    np.testing.assert_array_equal(_frames(written), to_uint8(video))


def test_a_folder_of_frames_numbered_with_a_gap_is_one_line_before_loading(assets, base_folder, tmp_path):  # noqa: F811
    _numbered_frames(assets / "init", (0, 8, 16, 24))  # keyframes: prompt-travel would start the rest from zeros
    config = assets / "prompt_travel.json"
    img2img = {"enable": True, "init_img_dir": "init", "denoising_strength": 0.6}
    config.write_text(json.dumps(document(img2img_map=img2img)))
    cache = ModelCache()
    with pytest.raises(ValueError, match="frame 8 follows frame 0; a folder of frames is read as one frame after"):
        run_prompt_config(config, base_folder, tmp_path / "s", cache, frames=4, progress=False)
    assert not cache.loads
