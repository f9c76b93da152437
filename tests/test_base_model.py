import json

import pytest
import torch

from animatediff.base_model import (
    DEFAULT_GUIDANCE_SCALE,
    STATEMENT_FILE,
    load_base,
    read_traits,
    size_multiple,
)
from animatediff.errors import InputError, InputNotFound
from animatediff.pipeline import AnimationPipeline
from tests.ldm_checkpoint import save_ldm_checkpoint
from tests.tiny import tiny_motion, tiny_text_encoder, tiny_unet, tiny_vae


def test_traits_come_from_the_config_files(base_folder):
    traits = read_traits(base_folder)
    assert (traits.prediction_type, traits.zero_snr) == ("epsilon", False)
    # The tiny VAE has 2 blocks (factor 2) and the tiny UNet 2 (one more halving); its 8-cell latents are 16 px.
    assert (traits.vae_scale_factor, traits.size_multiple, traits.native_size) == (2, 4, 16)
    assert traits.guidance_scale == DEFAULT_GUIDANCE_SCALE == 7.5
    assert traits.scheduler_config["beta_schedule"] == "linear"
    unet = json.loads((base_folder / "unet" / "config.json").read_text())
    vae = json.loads((base_folder / "vae" / "config.json").read_text())
    assert size_multiple(unet, vae) == traits.size_multiple
    overridden = read_traits(base_folder, prediction_type="v_prediction", zero_snr=True)
    assert (overridden.prediction_type, overridden.zero_snr) == ("v_prediction", True)
    with pytest.raises(InputError, match="unknown prediction type 'x0'"):
        read_traits(base_folder, prediction_type="x0")


def test_a_base_states_its_own_guidance(base_folder, tmp_path):
    (base_folder / STATEMENT_FILE).write_text(json.dumps({"guidance_scale": 3}))
    assert read_traits(base_folder).guidance_scale == 3.0
    pipe = AnimationPipeline.from_base(load_base(base_folder), tiny_motion())
    assert pipe.guidance_scale == 3.0
    (base_folder / STATEMENT_FILE).write_text(json.dumps({"guidance": 3}))
    with pytest.raises(InputError, match=r"unknown keys \[.guidance.\]; it may state guidance_scale"):
        read_traits(base_folder)
    (base_folder / STATEMENT_FILE).write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_traits(base_folder)


def test_the_noise_scheduler_is_the_bases_own_training_schedule(base_folder):
    scheduler = read_traits(base_folder, prediction_type="v_prediction").noise_scheduler()
    assert scheduler.config.prediction_type == "v_prediction" and scheduler.config.beta_schedule == "linear"
    assert scheduler.config.beta_start == 0.00085 and scheduler.config.beta_end == 0.012


def test_bad_bases_fail_before_any_weights_load(tmp_path, base_folder):
    with pytest.raises(InputNotFound, match="base model not found"):
        load_base(tmp_path / "nowhere")
    (tmp_path / "half" / "unet").mkdir(parents=True)
    with pytest.raises(InputNotFound, match="missing vae, text_encoder, tokenizer/"):
        load_base(tmp_path / "half")
    with pytest.raises(InputError, match="is a file"):
        load_base(base_folder / "unet" / "config.json")


def test_a_single_file_checkpoint_replaces_the_bases_weights(base_folder, tokenizer, tmp_path):
    personal = tmp_path / "db.safetensors"
    unet, vae, text_encoder = tiny_unet(seed=5), tiny_vae(seed=6), tiny_text_encoder(len(tokenizer), 7)
    save_ldm_checkpoint(personal, unet, vae, text_encoder)
    base = load_base(base_folder, dreambooth=personal)
    for ours, theirs in ((base.unet, unet), (base.vae, vae), (base.text_encoder, text_encoder)):
        expected = theirs.state_dict()
        assert all(torch.equal(v, expected[k]) for k, v in ours.state_dict().items())
    assert base.folder == base_folder and base.traits == read_traits(base_folder)


def test_a_base_states_its_words_and_sizes_and_calls_outside_them_are_warned(base_folder, caplog):
    statement = {"guidance_scale": 3.0, "vocabulary": ["a", "Red", "circle"], "size_range": [16, 16]}
    (base_folder / STATEMENT_FILE).write_text(json.dumps(statement))
    traits = read_traits(base_folder)
    assert traits.vocabulary == {"a", "red", "circle"} and traits.size_range == (16, 16)
    assert traits.prompt_warnings(["a red circle"], 16, 16) == []
    unknown, size = traits.prompt_warnings(["a red Corgi", "a blue circle"], 32, 16)
    assert (
        unknown.startswith("this model never saw the words blue, corgi in training")
        and "knows: a, circle, red" in unknown
    )
    assert size.startswith("16×32 px: this model draws 16×16")
    # Without a statement: no vocabulary check, and sizes from half to twice the native one.
    (base_folder / STATEMENT_FILE).unlink()
    plain = read_traits(base_folder)
    assert plain.vocabulary is None and plain.size_range == (8, 32)
    assert plain.prompt_warnings(["a corgi"], 32, 8) == []
    (base_folder / STATEMENT_FILE).write_text(json.dumps({"size_range": [16]}))
    with pytest.raises(InputError, match="size_range must be"):
        read_traits(base_folder)

    (base_folder / STATEMENT_FILE).write_text(json.dumps(statement))
    pipe = AnimationPipeline.from_base(load_base(base_folder), tiny_motion())
    with caplog.at_level("WARNING", logger="animatediff"):
        pipe("a red corgi", num_frames=2, num_inference_steps=1, progress=False)
    assert [r.getMessage().split(" in training")[0] for r in caplog.records] == ["this model never saw the words corgi"]
