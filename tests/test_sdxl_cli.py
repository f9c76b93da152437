"""SDXL through the command line: `generate` and `run` on a tiny SDXL folder with an SDXL motion-module file draw
what the Python API draws; a motion module of the other family is one line, exit 2."""

import numpy as np
import pytest
import yaml

from animatediff.cli import main
from animatediff.formats.motion_module_files import save_motion_modules
from animatediff.pipeline import AnimationPipeline
from tests.sdxl_tiny import tiny_sdxl_folder, tiny_sdxl_motion
from tests.tiny import tiny_motion

PROMPT = "a red circle moving left"


@pytest.fixture(scope="module")
def sdxl_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdxl-cli")
    return tiny_sdxl_folder(root / "base"), save_motion_modules(tiny_sdxl_motion(), root / "mm_sdxl.safetensors")


def test_generate_and_run_draw_what_the_api_draws(sdxl_files, tmp_path, one_thread):
    base, module = sdxl_files
    expected = AnimationPipeline.from_pretrained(base, module)(
        PROMPT, num_frames=4, height=32, width=32, num_inference_steps=2, seed=9, progress=False
    )[0]
    out = tmp_path / "frames.npy"
    args = ["--base", str(base), "--motion-module", str(module), "--prompt", PROMPT, "--frames", "4"]
    args += ["--width", "32", "--height", "32", "--steps", "2", "--seed", "9", "--quiet", "--output", str(out)]
    assert main(["generate", *args]) == 0
    np.testing.assert_array_equal(np.load(out), expected)

    config = tmp_path / "sdxl.yaml"
    entry = {"prompt": [PROMPT], "motion_module": [str(module)], "seed": 9, "steps": 2, "W": 32, "H": 32, "L": 4}
    config.write_text(yaml.safe_dump([entry]))
    assert main(["run", str(config), "--base", str(base), "--output-dir", str(tmp_path / "samples"), "--quiet"]) == 0
    assert len(list((tmp_path / "samples").glob("sdxl-*/sample/*.gif"))) == 1


def test_an_sd1_motion_module_on_sdxl_is_one_line(sdxl_files, tmp_path, capsys):
    base, _ = sdxl_files
    sd1 = save_motion_modules(tiny_motion(channels=(32, 64, 64, 64)), tmp_path / "mm_sd15.safetensors")
    args = ["generate", "--base", str(base), "--motion-module", str(sd1), "--prompt", PROMPT, "--quiet"]
    assert main([*args, "--output", str(tmp_path / "x.gif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "motion module was built for UNet channels (32, 64, 64, 64)" in err
