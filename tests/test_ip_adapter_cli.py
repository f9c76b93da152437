"""IP-Adapter on the command line: `generate --ip-adapter/--ip-image/--ip-scale/--image-encoder` and `run` entries
with the same keys draw what the pipeline draws, and bad options are one line before any model loads."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml
from PIL import Image
from safetensors.torch import save_file

from animatediff.cli import main
from animatediff.formats import save_motion_modules
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.ip_adapter import IPAdapter
from tests.test_ip_adapter import sample_image, tiny_image_encoder, tiny_ip_adapter
from tests.test_run_matches_generate import gif_frames
from tests.tiny import tiny_motion, tiny_unet


@pytest.fixture
def files(tmp_path):
    """motion module, IP-Adapter weights with image_encoder/ beside them, and an image file."""
    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    folder = tmp_path / "ip"
    folder.mkdir()
    save_file(tiny_ip_adapter(tiny_unet()), str(folder / "ip.safetensors"))
    save_file(tiny_ip_adapter(tiny_unet(), "plus", seed=1), str(folder / "ip_plus.safetensors"))
    tiny_image_encoder(folder / "image_encoder")
    sample_image(3).save(tmp_path / "look.png")
    sample_image(6).save(tmp_path / "style.png")
    left = np.zeros((64, 64), np.uint8)
    left[:, :32] = 255
    Image.fromarray(left).save(tmp_path / "left.png")
    return {"motion": motion, "weights": folder / "ip.safetensors", "image": tmp_path / "look.png",
            "plus": folder / "ip_plus.safetensors", "style": tmp_path / "style.png",
            "left": tmp_path / "left.png"}  # fmt: skip


def generate(base, files, out, *extra: str) -> int:  # noqa: ANN001
    args = ["generate", "--base", str(base), "--motion-module", str(files["motion"]), "--quiet", "--prompt", "a fox"]
    args += ["--frames", "4", "--steps", "2", "--seed", "3", "--output", str(out), *extra]
    return main(args)


def test_generate_with_an_ip_adapter_draws_what_the_pipeline_draws(tmp_path, base_folder, files, one_thread, capfd):
    encoder = shutil.copytree(files["weights"].parent / "image_encoder", tmp_path / "elsewhere")
    ip_args = ["--ip-adapter", str(files["weights"]), "--ip-image", str(files["image"]), "--ip-scale", "0.6"]
    assert generate(base_folder, files, tmp_path / "ip.npy", *ip_args) == 0
    assert capfd.readouterr() == ("", "")  # --quiet: no notices of loading the IP-Adapter either
    assert generate(base_folder, files, tmp_path / "enc.npy", *ip_args, "--image-encoder", str(encoder)) == 0
    assert generate(base_folder, files, tmp_path / "plain.npy") == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, files["motion"])
    ip_adapter = IPAdapter(files["weights"], files["image"], 0.6)
    expected = pipe("a fox", "", num_frames=4, num_inference_steps=2, seed=3, progress=False, ip_adapter=ip_adapter)
    got = np.load(tmp_path / "ip.npy")
    np.testing.assert_array_equal(got, expected[0])
    np.testing.assert_array_equal(np.load(tmp_path / "enc.npy"), got)
    assert np.abs(got - np.load(tmp_path / "plain.npy")).mean() > 1e-2


def test_two_ip_adapters_from_the_command_line_draw_what_the_pipeline_draws(tmp_path, base_folder, files, one_thread):
    """Each --ip-adapter after the first takes the options after it; those before the second are the first's."""
    first = ["--ip-image", str(files["image"]), "--ip-adapter", str(files["weights"]), "--ip-scale", "0.6"]
    second = ["--ip-adapter", str(files["plus"]), "--ip-image", str(files["style"]), "--ip-scale", "0.4"]
    assert generate(base_folder, files, tmp_path / "two.npy", *first, *second) == 0
    assert generate(base_folder, files, tmp_path / "one.npy", *first) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, files["motion"])
    adapters = [IPAdapter(files["weights"], files["image"], 0.6), IPAdapter(files["plus"], files["style"], 0.4)]
    expected = pipe("a fox", "", num_frames=4, num_inference_steps=2, seed=3, progress=False, ip_adapter=adapters)
    got = np.load(tmp_path / "two.npy")
    np.testing.assert_array_equal(got, expected[0])
    assert np.abs(got - np.load(tmp_path / "one.npy")).mean() > 1e-3


def test_a_mask_from_the_command_line_draws_what_the_pipeline_draws(tmp_path, base_folder, files, one_thread):
    ip_args = [
        "--ip-adapter",
        str(files["weights"]),
        "--ip-image",
        str(files["image"]),
        "--ip-mask",
        str(files["left"]),
    ]
    assert generate(base_folder, files, tmp_path / "masked.npy", *ip_args) == 0
    assert generate(base_folder, files, tmp_path / "whole.npy", *ip_args[:4]) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, files["motion"])
    ip_adapter = IPAdapter(files["weights"], files["image"], mask=files["left"])
    expected = pipe("a fox", "", num_frames=4, num_inference_steps=2, seed=3, progress=False, ip_adapter=ip_adapter)
    got = np.load(tmp_path / "masked.npy")
    np.testing.assert_array_equal(got, expected[0])
    assert np.abs(got - np.load(tmp_path / "whole.npy")).mean() > 1e-3


def test_a_scale_per_block_from_the_command_line(tmp_path, base_folder, files, one_thread):
    """--ip-scale as YAML in diffusers' layer-wise form draws what the pipeline draws with that mapping."""
    scale = "{up: {block_1: [0, 1, 0]}}"
    ip_args = ["--ip-adapter", str(files["weights"]), "--ip-image", str(files["image"]), "--ip-scale", scale]
    assert generate(base_folder, files, tmp_path / "style.npy", *ip_args) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, files["motion"])
    ip_adapter = IPAdapter(files["weights"], files["image"], {"up": {"block_1": [0.0, 1.0, 0.0]}})
    expected = pipe("a fox", "", num_frames=4, num_inference_steps=2, seed=3, progress=False, ip_adapter=ip_adapter)
    np.testing.assert_array_equal(np.load(tmp_path / "style.npy"), expected[0])


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--ip-adapter", "{weights}", "--ip-image", "{image}", "--ip-adapter", "{weights}"],
            "IP-Adapter 2 of 2 ({weights}): --ip-adapter needs --ip-image",
        ),
        (
            ["--ip-adapter", "{weights}", "--ip-image", "{image}", "--ip-scale", "1", "--ip-scale", "2"],
            "--ip-scale given twice for one --ip-adapter",
        ),
        (
            [
                "--ip-adapter",
                "{weights}",
                "--ip-image",
                "{image}",
                "--ip-adapter",
                "{weights}",
                "--ip-image",
                "0:{image}",
                "--ip-image",
                "4:{image}",
            ],
            "keyframe 4 is beyond",
        ),
        (
            ["--ip-adapter", "{weights}", "--ip-image", "{image}", "--ip-scale", "high"],
            "--ip-scale 'high': give a number ≥ 0, or the blocks it acts in",
        ),
        (
            ["--ip-adapter", "{weights}", "--ip-image", "{image}", "--ip-scale", "{{upper: 1}}"],
            "--ip-scale: unknown part 'upper'; the parts are down, mid and up",
        ),
        (["--ip-mask", "{image}"], "--ip-mask needs --ip-adapter"),
        (
            ["--ip-adapter", "{weights}", "--ip-image", "{image}", "--ip-mask", "{tmp}/none.png"],
            "IP-Adapter mask: file not found",
        ),
        (["--ip-image", "{image}"], "--ip-image needs --ip-adapter"),
        (["--ip-scale", "0.5"], "--ip-scale needs --ip-adapter"),
        (["--image-encoder", "x"], "--image-encoder needs --ip-adapter"),
        (["--ip-adapter", "{weights}"], "--ip-adapter needs --ip-image"),
        (["--ip-adapter", "{weights}", "--ip-image", "{image}", "--ip-scale", "-1"], "--ip-scale -1.0 must be"),
        (["--ip-adapter", "{tmp}/none.safetensors", "--ip-image", "{image}"], "IP-Adapter not found"),
        (["--ip-adapter", "{weights}", "--ip-image", "{tmp}/none.png"], "IP-Adapter image not found"),
        (["--ip-adapter", "{weights}", "--ip-image", "{weights}"], "not a readable image"),
        (["--ip-adapter", "{weights}", "--ip-image", "{image}", "--image-encoder", "./nowhere"], "encoder not found"),
        (["--ip-adapter", "{weights}", "--ip-image", "0:{image}", "--ip-image", "4:{image}"], "keyframe 4 is beyond"),
        (["--ip-adapter", "{weights}", "--ip-image", "0:{image}", "--ip-image", "{image}"], "image not found: 0:"),
    ],
)
def test_bad_ip_adapter_options_are_one_line_before_loading(
    tmp_path, base_folder, files, capsys, monkeypatch, extra, message
):
    def no_loading(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(AnimationPipeline, "from_pretrained", no_loading)
    values = {"image": files["image"], "weights": files["weights"], "tmp": tmp_path}
    assert generate(base_folder, files, tmp_path / "o.npy", *[e.format(**values) for e in extra]) == 2
    err = capsys.readouterr().err
    assert message.format(**values) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("two", [False, True])
def test_a_run_entry_with_ip_adapter_keys_draws_what_generate_draws(tmp_path, base_folder, files, one_thread, two):
    """The entry's own IP-Adapter keys (its image found by the config's folder), and with `two` a second image
    prompt in ip_adapters, masked to the left half: the frames generate draws with --ip-adapter given once or
    twice."""
    entry = {"motion_module": str(files["motion"]), "prompt": ["a fox"], "seed": 3, "steps": 2, "L": 4}
    entry |= {"ip_adapter": str(files["weights"]), "ip_image": "look.png", "ip_scale": 0.6}
    ip_args = ["--ip-adapter", str(files["weights"]), "--ip-image", str(files["image"]), "--ip-scale", "0.6"]
    if two:
        second = {"ip_adapter": str(files["plus"]), "ip_image": ["style.png"], "ip_scale": 0.4, "ip_mask": "left.png"}
        entry["ip_adapters"] = [second]
        ip_args += ["--ip-adapter", str(files["plus"]), "--ip-image", str(files["style"]), "--ip-scale", "0.4"]
        ip_args += ["--ip-mask", str(files["left"])]
    config = tmp_path / "entry.yaml"
    config.write_text(yaml.safe_dump([entry]))
    assert (
        main(["run", str(config), "--base", str(base_folder), "--output-dir", str(tmp_path / "runs"), "--quiet"]) == 0
    )
    (drawn,) = (tmp_path / "runs").glob("entry-*/sample/0-*.gif")
    assert generate(base_folder, files, tmp_path / "generated.gif", *ip_args) == 0
    np.testing.assert_array_equal(gif_frames(drawn), gif_frames(tmp_path / "generated.gif"))


@pytest.mark.parametrize(
    "keys, message",
    [
        (
            {"ip_adapter": "{weights}", "ip_image": "look.png", "ip_adapters": {"ip_adapter": "{weights}"}},
            "ip_adapters must be a list of",
        ),
        (
            {"ip_adapter": "{weights}", "ip_image": "look.png", "ip_adapters": [{"ip_image": "look.png"}]},
            "entry 0: ip_adapters[0]: give ip_adapter, the IP-Adapter weights",
        ),
        (
            {
                "ip_adapter": "{weights}",
                "ip_image": "look.png",
                "ip_adapters": [{"ip_adapter": "{weights}", "ip_imag": "look.png"}],
            },
            "ip_adapters[0]: unknown key 'ip_imag'; did you mean 'ip_image'?",
        ),
        (
            {"ip_adapter": "{weights}", "ip_image": "look.png", "ip_adapters": [{"ip_adapter": "{weights}"}]},
            "ip_adapters[0]: ip_adapter needs ip_image",
        ),
        (
            {"ip_adapters": [{"ip_adapter": "{weights}", "ip_image": "look.png"}]},
            "ip_adapters adds to the entry's own image prompt; give ip_adapter and ip_image",
        ),
        (
            {
                "ip_adapter": "{weights}",
                "ip_image": "look.png",
                "ip_adapters": [{"ip_adapter": "{weights}", "ip_image": "gone.png"}],
            },
            "ip_image 'gone.png' not found",
        ),
        ({"ip_image": "look.png"}, "entry 0: ip_image needs ip_adapter"),
        ({"ip_adapter": "{weights}", "ip_image": "look.png", "ip_mask": "gone.png"}, "ip_mask 'gone.png' not found"),
        ({"ip_adapter": "{weights}", "ip_image": "look.png", "ip_mask": 3}, "ip_mask must be a path, got 3"),
        ({"ip_adapter": "{weights}"}, "entry 0: ip_adapter needs ip_image"),
        ({"ip_adapter": "{weights}", "ip_image": "look.png", "ip_scale": "high"}, "ip_scale 'high' must be a number"),
        (
            {"ip_adapter": "{weights}", "ip_image": "look.png", "ip_scale": {"upper": 1}},
            "ip_scale: unknown part 'upper'; the parts are down, mid and up",
        ),
        ({"ip_adapter": "{weights}", "ip_image": ["look.png", 3]}, "ip_image must be a path or a list of paths"),
        ({"ip_adapter": "{weights}", "ip_image": "gone.png"}, "ip_image 'gone.png' not found"),
        ({"ip_adaptor": "{weights}"}, "did you mean 'ip_adapter'?"),
    ],
)
def test_bad_ip_adapter_keys_name_the_problem(tmp_path, base_folder, files, capsys, keys, message):
    entry = {"motion_module": str(files["motion"]), "prompt": ["a fox"]}
    entry |= {k: v.format(weights=files["weights"]) if isinstance(v, str) else v for k, v in keys.items()}
    for item in entry.get("ip_adapters") or []:
        if isinstance(item, dict) and "ip_adapter" in item:
            item["ip_adapter"] = item["ip_adapter"].format(weights=files["weights"])
    config = tmp_path / "entry.yaml"
    config.write_text(yaml.safe_dump([entry]))
    assert main(["run", str(config), "--base", str(base_folder), "--output-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_ip_images_at_keyframes_from_the_command_line(tmp_path, base_folder, files, one_thread):
    """--ip-image FRAME:IMAGE, repeated: keyframes, interpolated as the prompt travels."""
    sample_image(5).save(tmp_path / "other.png")
    ip_args = ["--ip-adapter", str(files["weights"]), "--ip-image", f"0:{files['image']}", "--ip-image",
               f"3:{tmp_path / 'other.png'}", "--prompt-interpolation", "slerp"]  # fmt: skip
    assert generate(base_folder, files, tmp_path / "keyed.npy", *ip_args) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, files["motion"])
    ip_adapter = IPAdapter(files["weights"], {0: files["image"], 3: tmp_path / "other.png"})
    expected = pipe("a fox", "", num_frames=4, num_inference_steps=2, seed=3, progress=False, ip_adapter=ip_adapter,
                    prompt_interpolation="slerp")  # fmt: skip
    np.testing.assert_array_equal(np.load(tmp_path / "keyed.npy"), expected[0])
