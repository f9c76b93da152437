"""Keyframe ControlNets in `run` entries (`keyframe_controlnets`, what prompt-travel's controlnet_map becomes): a
folder of PNGs named by their frame read as keyframes and drawn as the pipeline draws them given directly; a folder
without any is left out with a warning; bad items are one line."""

import logging

import numpy as np
import pytest
from PIL import Image

from animatediff.entry_pipeline_args import entry_pipeline_args
from animatediff.errors import InputError
from animatediff.pipeline.keyframe_control_inputs import keyframe_images
from animatediff.pipeline.keyframe_controlnet import KeyframeControlNet
from animatediff.prompt_entries import parse_entry
from tests.controlnet_helpers import tiny_controlnet

RAW = {"prompt": ["a red circle"], "n_prompt": ["blurry"], "motion_module": "m.ckpt", "steps": 2, "L": 6, "W": 16,
       "H": 16, "guidance_scale": 7.5}  # fmt: skip


def _write(folder, frames: dict[int, np.ndarray], names: dict[int, str] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for frame, image in frames.items():
        name = (names or {}).get(frame, f"{frame:04d}.png")
        Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / name)


def test_an_entrys_keyframe_images_draw_as_given_directly(make_pipeline, tmp_path, one_thread):
    pipe = make_pipeline("v2")
    model = tiny_controlnet(pipe.unet.unet)
    model.save_pretrained(tmp_path / "cn")
    rng = np.random.default_rng(0)
    images = {0: rng.random((16, 16, 3)), 3: rng.random((16, 16, 3)), 12: rng.random((16, 16, 3))}
    _write(tmp_path / "pose", images, {3: "3.png"})  # any number of digits; frame 12 is past the clip
    (tmp_path / "pose" / "notes.png").write_bytes(b"")  # not named by a number: not read
    item = {"model": "cn", "images": "pose", "scale": 0.9, "spread": [0.5], "loop": False, "end": 0.8}
    entry = parse_entry({**RAW, "keyframe_controlnets": [item]}, "run.yaml")
    call = entry_pipeline_args(entry, pipe, 16, None, None, [], lambda p: str(tmp_path / p) if p else p)
    (control,) = call["controlnets"]
    assert sorted(control.keyframes) == [0, 3] and control.spread == (0.5,) and not control.loop
    got = pipe("a red circle", "blurry", seed=1, progress=False, **call)
    stored = {k: np.asarray(Image.open(tmp_path / "pose" / n), dtype=np.float32) / 255 for k, n in ((0, "0000.png"),
              (3, "3.png"))}  # fmt: skip
    direct = KeyframeControlNet(model, stored, scale=0.9, end=0.8, spread=(0.5,), loop=False)
    args = dict(num_frames=6, height=16, width=16, num_inference_steps=2, guidance_scale=7.5)
    np.testing.assert_array_equal(got, pipe("a red circle", "blurry", **args, seed=1, progress=False,
                                            controlnets=[direct]))  # fmt: skip


def test_a_folder_without_numbered_pngs_gives_no_controlnet(make_pipeline, tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    entry = parse_entry({**RAW, "keyframe_controlnets": [{"model": "cn", "images": "empty"}]}, "run.yaml")
    with caplog.at_level(logging.WARNING, logger="animatediff"):
        call = entry_pipeline_args(entry, make_pipeline(), 16, None, None, [], lambda p: str(tmp_path / p) if p else p)
    assert call["controlnets"] == [] and "no numbered PNG in empty: not used" in caplog.text
    with pytest.raises(InputError, match="keyframe control images: folder not found"):
        keyframe_images(tmp_path / "missing", 8)
    _write(tmp_path / "upper", {2: np.zeros((4, 4, 3))}, {2: "0002.PNG"})
    assert list(keyframe_images(tmp_path / "upper", 8)) == [2]  # the suffix in any case
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(InputError, match="not a folder"):
        keyframe_images(tmp_path / "file.png", 8)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("cn", "keyframe_controlnets\\[0\\] must be a mapping"),
        ({"model": "cn"}, "images must be a path"),
        ({"model": "cn", "images": "p", "spread": "0.5"}, "spread must be a list of numbers"),
        ({"model": "cn", "images": "p", "loop": "yes"}, "guess_mode and loop must be true or false"),
        (
            {"model": "cn", "images": "p", "annotator": "dwpose"},
            "annotator 'dwpose': choose one of canny, lineart, color, none",
        ),
        ({"model": "cn", "images": "p", "start": 0.9, "end": 0.5}, "need 0 ≤ start < end ≤ 1"),
        ({"model": "cn", "images": "p", "scales": [1]}, "unknown key 'scales'"),
    ],
)
def test_bad_items_are_one_line(item, message):
    with pytest.raises(InputError, match=f"run.yaml: .*{message}"):
        parse_entry({**RAW, "keyframe_controlnets": [item]}, "run.yaml")


def test_generate_takes_keyframe_controlnets(tmp_path, pipeline_calls, one_thread):
    from animatediff.cli import main
    from animatediff.pipeline import AnimationPipeline
    from animatediff.world.layout import EMBEDDED

    world = AnimationPipeline.from_pretrained(EMBEDDED / "base", EMBEDDED / "motion_module.safetensors")
    tiny_controlnet(world.unet.unet, stages=(16, 32, 64)).save_pretrained(tmp_path / "cn")  # the world VAE's 4×
    _write(tmp_path / "edges", {0: np.random.default_rng(1).random((32, 32, 3)), 3: np.zeros((32, 32, 3))})
    args = ["generate", "--prompt", "a red circle moving left on a blue background", "--frames", "4", "--steps", "2",
            "--seed", "1", "--quiet", "--output"]  # fmt: skip
    steered = [f"{tmp_path / 'cn'}:0.9={tmp_path / 'edges'}", "--control-spread", "0.5", "--no-control-loop"]
    assert main([*args, str(tmp_path / "a.gif"), "--keyframe-controlnet", *steered]) == 0
    (control,) = pipeline_calls[-1]["controlnets"]
    assert isinstance(control, KeyframeControlNet) and sorted(control.keyframes) == [0, 3]
    assert (control.scale, control.spread, control.loop) == (0.9, (0.5,), False)
    assert main([*args, str(tmp_path / "b.gif"), "--control-spread", "0.5"]) == 2  # without a keyframe ControlNet
    assert main([*args, str(tmp_path / "c.gif"), "--keyframe-controlnet", str(tmp_path / "cn")]) == 2  # no =DIR
    assert not (tmp_path / "b.gif").exists() and not (tmp_path / "c.gif").exists()


def test_a_run_names_a_missing_keyframe_folder_before_loading(tmp_path):
    import json

    from animatediff.errors import InputNotFound
    from animatediff.prompt_config import run_prompt_config

    config = tmp_path / "run.json"
    item = {"model": "cn", "images": "poses"}
    config.write_text(json.dumps([{**RAW, "keyframe_controlnets": [item]}]))
    (tmp_path / "cn").mkdir()
    (tmp_path / "m.ckpt").write_bytes(b"")  # found: only the folder is missing
    with pytest.raises(InputNotFound, match="keyframe_controlnets images 'poses' not found"):
        run_prompt_config(config, tmp_path / "no-base", tmp_path / "out", progress=False)
