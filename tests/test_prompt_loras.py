"""LoRAs named in the prompt as A1111 names them, `<lora:NAME:WEIGHT>` (`--lora-dir`, run key `lora_dir`, the web
app's Lora/ and motion_lora/): the tags read and taken out of the text, the file found by its name, merged as what it
is (image LoRA or MotionLoRA): the same frames as naming the file with --lora or --motion-lora."""

import json
import re

import numpy as np
import pytest
from PIL import Image, ImageSequence

from animatediff.errors import InputError
from animatediff.prompt_loras import find_lora, lora_tags, without_lora_tags
from animatediff.world.layout import EMBEDDED

PERSONALIZED = EMBEDDED / "personalized"
MOTION_LORAS = EMBEDDED / "motion_loras"


@pytest.mark.parametrize(
    ("texts", "tags"),
    [
        (["a cat <lora:style:0.7>, <lora:pan>"], {"style": 0.7, "pan": 1.0}),
        (["a <lora:style:0.7>", "b <lora:style:0.7:0.7>"], {"style": 0.7}),  # the same weight twice: once
        (["a cat, smiling"], {}),
    ],
)
def test_tags_are_read(texts, tags):
    assert lora_tags(texts) == tags


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<lora:style:high>", "the weight must be a number"),
        ("<lora:style:0.7:0.2>", "one weight per LoRA here"),
        ("<lora:style:0.7> <lora:style:0.5>", "<lora:style> is written at two weights (0.7 and 0.5)"),
    ],
)
def test_bad_tags_are_one_line(text, message):
    with pytest.raises(InputError, match=re.escape(message)):
        lora_tags([text])


def test_the_tag_leaves_the_text_and_the_file_is_found_by_its_name(tmp_path):
    assert without_lora_tags("a cat, <lora:style:0.7> smiling") == "a cat,  smiling"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "style.safetensors").write_bytes(b"x")
    (tmp_path / "style.txt").write_text("not weights")
    assert find_lora("style", [tmp_path]) == tmp_path / "sub" / "style.safetensors"
    with pytest.raises(InputError, match=r"<lora:pan>: no LoRA file named pan in"):
        find_lora("pan", [tmp_path])
    with pytest.raises(InputError, match=r"no LoRA folder \(give one: --lora-dir\)"):
        find_lora("pan", [])


def _frames(path) -> np.ndarray:  # noqa: ANN001
    return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(path))])


def test_a_tag_draws_as_the_file_named_with_lora_or_motion_lora(tmp_path, one_thread):
    from animatediff.cli import main

    base = ["generate", "--frames", "4", "--steps", "2", "--seed", "3", "--quiet"]
    caption = "a red circle on a blue background"
    tagged = [*base, "--prompt", f"{caption} <lora:outlined_lora:0.8> <lora:right:0.9>", "--lora-dir",
              str(PERSONALIZED), "--lora-dir", str(MOTION_LORAS), "--output", str(tmp_path / "t.gif")]  # fmt: skip
    named = [*base, "--prompt", f"{caption}  ", "--lora", f"{PERSONALIZED / 'outlined_lora.safetensors'}:0.8",
             "--motion-lora", f"{MOTION_LORAS / 'right.safetensors'}:0.9",
             "--output", str(tmp_path / "n.gif")]  # fmt: skip
    assert main(tagged) == 0 and main(named) == 0
    np.testing.assert_array_equal(_frames(tmp_path / "t.gif"), _frames(tmp_path / "n.gif"))
    assert main([*base, "--prompt", "a cat <lora:missing>", "--output", str(tmp_path / "m.gif")]) == 2
    assert not (tmp_path / "m.gif").exists()


def test_run_entries_and_the_web_form_find_tagged_loras(tmp_path, models_dir, one_thread):
    from animatediff.model_cache import ModelCache
    from animatediff.prompt_config import run_prompt_config
    from animatediff.prompt_entries import load_prompt_config
    from animatediff.ui.catalog import scan
    from animatediff.ui.job_models import spec
    from animatediff.ui.run_config import run_yaml
    from animatediff.ui.settings import parse, prompt_of, with_seed

    config = tmp_path / "run.yaml"
    entry = {"prompt": ["a red circle on a blue background <lora:right:0.9>"], "n_prompt": [""], "seed": 1,
             "steps": 1, "L": 2, "lora_dir": str(MOTION_LORAS),
             "motion_module": [str(EMBEDDED / "motion_module.safetensors")]}  # fmt: skip
    config.write_text(json.dumps([entry]))
    cache = ModelCache()
    out = run_prompt_config(config, EMBEDDED / "base", tmp_path / "out", cache=cache, progress=False)
    assert [name for name in cache._pipe.loras.active] == [f"auto:{MOTION_LORAS / 'right.safetensors'}"]
    assert (out / "sample" / "0-a-red-circle-on-a-blue-background-.gif").exists()  # named without the tag

    (models_dir / "motion_lora" / "right.safetensors").write_bytes((MOTION_LORAS / "right.safetensors").read_bytes())
    catalog = scan(models_dir)
    s = with_seed(parse({"prompt": "a red circle <lora:right:0.5>"}, catalog))
    assert spec(s, catalog).loras[-1] == ("auto", str(models_dir / "motion_lora" / "right.safetensors"), 0.5)
    assert prompt_of(s) == "a red circle "
    (tmp_path / "job.yaml").write_text(run_yaml(s, catalog))
    (job,), _ = load_prompt_config(tmp_path / "job.yaml")
    assert job.lora_dir == [str(models_dir / "Lora"), str(models_dir / "motion_lora")] and not job.lora_configs
    with pytest.raises(InputError, match="<lora:nowhere>: no LoRA file named nowhere in .*Lora, .*motion_lora"):
        parse({"prompt": "a red circle <lora:nowhere>"}, catalog)


def test_the_web_form_finds_a_tagged_lora_where_its_run_entry_does(models_dir, tmp_path):
    """Lora/ itself first, then its subfolders, then motion_lora/, as `find_lora` searches the entry's lora_dir;
    a file whose link points out of the models folder is refused."""
    from animatediff.prompt_loras import find_lora
    from animatediff.ui.catalog import scan
    from animatediff.ui.job_models import spec
    from animatediff.ui.settings import parse, with_seed

    weights = (MOTION_LORAS / "right.safetensors").read_bytes()
    (models_dir / "Lora" / "sub").mkdir()
    (models_dir / "Lora" / "sub" / "pan.safetensors").write_bytes(weights)
    (models_dir / "motion_lora" / "pan.safetensors").write_bytes(weights)
    catalog = scan(models_dir)
    s = with_seed(parse({"prompt": "a red circle <lora:pan:0.5>"}, catalog))
    found = spec(s, catalog).loras[-1][1]
    assert found == str(models_dir / "Lora" / "sub" / "pan.safetensors")
    assert found == str(find_lora("pan", [models_dir / "Lora", models_dir / "motion_lora"]))
    (models_dir / "Lora" / "away.safetensors").symlink_to(tmp_path / "secret.safetensors")
    with pytest.raises(InputError, match="away.safetensors points outside the models folder"):
        spec(with_seed(parse({"prompt": "a red circle <lora:away>"}, catalog)), catalog)
