"""Regional prompts from `generate --region MASK:PROMPT`, a run entry's `regions` and a prompt-travel document's
`region_map`: what the library draws, and bad input as one line before any model loads."""

import json
import re

import numpy as np
import pytest
import yaml
from PIL import Image

from animatediff.entry_pipeline_args import entry_pipeline_args
from animatediff.errors import InputError
from animatediff.formats import save_motion_modules
from animatediff.model_cache import ModelCache
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.regions import Region
from animatediff.prompt_config import load_prompt_config, run_prompt_config
from tests.cli_helpers import assert_run_drew, generate, generate_error
from tests.test_ui import PROMPT, call, rerun, served, wait  # noqa: F401
from tests.tiny import tiny_motion


def mask_image(path, left: bool):  # noqa: ANN001, ANN201
    pixels = np.zeros((16, 16), np.uint8)
    pixels[:, :8] = 255 if left else 0
    pixels[:, 8:] = 0 if left else 255
    Image.fromarray(pixels).save(path)
    return path


def test_the_cli_and_a_run_entry_draw_what_the_library_draws(tmp_path, base_folder, one_thread):
    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    left, right = mask_image(tmp_path / "left.png", True), mask_image(tmp_path / "right.png", False)
    extra = ["--region", f"{left}:a red cat", "--region", f"{right}:a dog: running", "--guidance-scale", "7.5"]
    assert generate(base_folder, motion, tmp_path / "o.npy", *extra) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    regions = [Region("a red cat", str(left)), Region("a dog: running", str(right))]
    call = dict(num_frames=4, num_inference_steps=4, guidance_scale=7.5, progress=False, seed=3)
    expected = pipe("a fox", "", regions=regions, **call)[0]
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected)
    assert np.abs(expected - pipe("a fox", "", **call)[0]).max() > 1e-2

    masks = tmp_path / "masks"
    masks.mkdir()
    mask_image(masks / "0000.png", True), mask_image(masks / "0002.png", False)
    items = [{"mask": str(masks), "prompt_map": {0: "a red cat", 2: "a dog"}, "head_prompt": "best"}]
    entry = {"motion_module": str(motion), "prompt": ["a fox"], "seed": 3, "steps": 4, "L": 4, "guidance_scale": 7.5,
             "regions": items, "prompt_fixed_ratio": 0.5}  # fmt: skip
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump([entry]))
    run_prompt_config(tmp_path / "entry.yaml", base_folder, tmp_path / "runs", ModelCache(), progress=False)
    held = {0: "best,a red cat", 1: "best,a red cat", 2: "best,a dog"}  # held for half of each gap
    expected = pipe("a fox", "", regions=[Region(held, str(masks))], **call)[0]
    assert_run_drew(tmp_path / "runs", expected, tmp_path)


def test_a_prompt_travel_region_map_reads_as_regions(tmp_path, make_pipeline):
    """Each enabled region (in the order written) with its mask folder and condition; disabled ones, save_mask
    and the background's hint are dropped; the region's keyframes held by its own prompt_fixed_ratio, round the end
    as the document's are."""
    masks = tmp_path / "region0"
    masks.mkdir()
    mask_image(masks / "0000.png", True)
    condition = {"prompt_fixed_ratio": 1.0, "head_prompt": "h", "tail_prompt": "", "prompt_map": {"0": "a", "4": "b"},
                 "ip_adapter_map": {"enable": False, "input_image_dir": "x"}}  # fmt: skip
    region_map = {
        "0": {"enable": True, "mask_dir": str(masks), "save_mask": True, "is_init_img": False, "condition": condition},
        "1": {"enable": False, "mask_dir": "elsewhere", "save_mask": True, "is_init_img": False, "condition": {}},
        "background": {"is_init_img": False, "hint": "background's condition refers to the one in root"},
    }
    document = {"motion_module": "mm.safetensors", "prompt_map": {"0": "a fox"}, "region_map": region_map}
    (tmp_path / "doc.json").write_text(json.dumps(document))
    (entry,), _ = load_prompt_config(tmp_path / "doc.json")
    assert entry.regions == [{"mask": str(masks), "prompt_map": {0: "a", 4: "b"}, "head_prompt": "h",
                              "tail_prompt": "", "prompt_fixed_ratio": 1.0}]  # fmt: skip
    (region,) = entry_pipeline_args(entry, make_pipeline("v2"), 8, 16, 16, [])["regions"]
    assert region == Region({0: "h,a", 3: "h,a", 4: "h,b", 7: "h,b"}, str(masks))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--region", "a fox"], "--region 'a fox': give MASK:PROMPT"),
        (["--region", "nowhere.png:a fox"], "region 0 mask: file not found: nowhere.png"),
        (["--region", "{mask}:a cat", "--prompt-editing"], "regions are drawn without prompt editing"),
    ],
)
def test_bad_regions_fail_in_one_line_before_loading(tmp_path, capsys, monkeypatch, extra, message):
    mask = mask_image(tmp_path / "m.png", True)
    err = generate_error(tmp_path, capsys, monkeypatch, *[e.format(mask=mask) for e in extra])
    assert re.search(re.escape(message), err), err


@pytest.mark.parametrize(
    "regions, message",
    [
        ("m.png", "regions must be a list of {mask, prompt} mappings"),
        ([{"prompt": "a"}], "regions[0]: mask must be the path of a mask image"),
        ([{"mask": "m.png"}], "regions[0]: give prompt (one text) or prompt_map"),
        ([{"mask": "m.png", "prompt": "a", "colour": 1}], "regions[0]: unknown key 'colour'"),
        ([{"mask": "m.png", "prompt_map": {"x": "a"}}], "regions[0] prompt_map: frame 'x'"),
        ([{"mask": "m.png", "prompt": "a", "prompt_fixed_ratio": 2}], "regions[0]: prompt_fixed_ratio must be"),
    ],
)
def test_bad_region_entries_name_the_problem(tmp_path, regions, message):
    entry = {"motion_module": "mm.safetensors", "prompt": ["a"], "regions": regions}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump([entry]))
    with pytest.raises(InputError, match=re.escape(message)):
        load_prompt_config(tmp_path / "c.yaml")


@pytest.mark.parametrize(
    "region, message",
    [
        ({"enable": True, "is_init_img": True}, "mask_dir, the folder of its masks named by frame, is required"),
        ({"enable": True, "mask_dir": "m", "crop_generation_rate": 0.2}, "crop_generation_rate is not drawn"),
        ({"enable": True}, "mask_dir, the folder of its masks named by frame, is required"),
        (
            {
                "enable": True,
                "mask_dir": "m",
                "condition": {"prompt_map": {"0": "b"}, "ip_adapter_map": {"enable": True}},
            },
            "ip_adapter_map needs input_image_dir",
        ),
        ({"enable": True, "mask_dir": "m", "condition": {}}, "its condition needs a prompt_map"),
    ],
)
def test_what_a_region_map_asks_that_is_not_drawn_is_one_line(tmp_path, region, message):
    document = {"motion_module": "mm.safetensors", "prompt_map": {"0": "a"}, "region_map": {"0": region}}
    (tmp_path / "doc.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match=re.escape(message)):
        load_prompt_config(tmp_path / "doc.json")


def test_the_web_form_draws_regions_from_an_uploaded_mask_and_its_run_yaml(served, tmp_path):  # noqa: F811
    """A region row (an uploaded mask, a prompt) changes the job's frames, and its run YAML draws the same; a row
    with a mask and no prompt is one line."""
    import io

    from animatediff.io.video_input import read_video_input

    studio, url = served
    png = io.BytesIO()
    Image.open(mask_image(tmp_path / "m.png", False)).save(png, format="PNG")
    _, uploaded = call(f"{url}/api/upload?name=mask.png", raw=png.getvalue())
    plain = {"prompt": PROMPT, "frames": 4, "steps": 3, "seed": 4}
    region = plain | {"regions": [{"mask": uploaded["id"], "prompt": "a green square moving up on a white background"}]}
    jobs = [wait(url, call(f"{url}/api/generate", fields)[1]["id"]) for fields in (plain, region)]
    assert [job["state"] for job in jobs] == ["done"] * 2, [job["error"] for job in jobs]
    frames = [read_video_input(studio.output_dir / job["file"], 4) for job in jobs]
    assert np.abs(frames[0] - frames[1]).max() > 0.05
    text, again = rerun(url, jobs[1], tmp_path, 4)
    assert "regions:" in text and "a green square moving up" in text
    np.testing.assert_array_equal(frames[1], again)
    status, body = call(f"{url}/api/generate", plain | {"regions": [{"mask": uploaded["id"], "prompt": " "}]})
    assert (status, body) == (400, {"error": "region 1: give its prompt"})


def test_prompt_travel_is_init_img_keeps_the_img2img_video(tmp_path):
    """A region's is_init_img is keep_video, the background's keep_background; both need img2img_map's video."""
    masks, frames = tmp_path / "person", tmp_path / "frames"
    masks.mkdir()
    frames.mkdir()
    mask_image(masks / "0000.png", True)
    for i in range(4):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(frames / f"{i:04d}.png")
    region_map = {"0": {"enable": True, "mask_dir": str(masks), "is_init_img": False,
                        "condition": {"prompt_map": {"0": "a robot"}}},
                  "1": {"enable": True, "mask_dir": str(masks), "is_init_img": True},
                  "background": {"is_init_img": True}}  # fmt: skip
    img2img = {"enable": True, "init_img_dir": str(frames), "denoising_strength": 0.7, "save_init_image": False}
    document = {"motion_module": "mm.safetensors", "prompt_map": {"0": "a stage"}, "region_map": region_map,
                "img2img_map": img2img}  # fmt: skip
    (tmp_path / "doc.json").write_text(json.dumps(document))
    (entry,), _ = load_prompt_config(tmp_path / "doc.json")
    assert entry.regions[1] == {"mask": str(masks), "keep_video": True} and entry.keep_background
    assert entry.video == str(frames)
    document.pop("img2img_map")
    (tmp_path / "doc.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match="needs a video"):
        load_prompt_config(tmp_path / "doc.json")
