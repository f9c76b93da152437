"""The web app's form without a server: the catalog's path safety, each field's check (one line naming the field),
and what the form's windows, ControlNet units and image prompt become in the job's run entry."""

import json
import re

import pytest

from animatediff.cli import build_parser
from animatediff.errors import InputError
from animatediff.ui.catalog import scan
from animatediff.ui.settings import parse
from tests.test_ui import PROMPT


def test_catalog_lists_the_folder_and_the_world_but_no_symlink_out(models_dir):
    catalog = scan(models_dir)
    ids = {kind: [c.id for c in items] for kind, items in catalog.choices.items()}
    assert ids["lora"] == ["world:outlined", "Lora/style.safetensors"]
    assert ids["dreambooth"] == ["world:star", "Stable-diffusion/broken.safetensors"]
    assert "world:base" in ids["base"] and "world:left" in ids["motion_lora"]
    assert catalog.resolve("lora", "Lora/style.safetensors") == models_dir / "Lora" / "style.safetensors"


@pytest.mark.parametrize(
    "choice",
    ["Lora/escape.safetensors", "../secret.safetensors", "Lora/../../secret.safetensors", "/etc/passwd", "world:nope"],
)
def test_catalog_refuses_what_the_scan_did_not_list(models_dir, choice):
    with pytest.raises(InputError, match="not in the models folder"):
        scan(models_dir).resolve("lora", choice)


def test_a_symlink_swapped_in_after_the_scan_is_refused(models_dir, tmp_path):
    catalog = scan(models_dir)
    style = models_dir / "Lora" / "style.safetensors"
    style.unlink()
    style.symlink_to(tmp_path / "secret.safetensors")
    with pytest.raises(InputError, match="outside the models folder"):
        catalog.resolve("lora", "Lora/style.safetensors")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": "  "}, "prompt: empty"),
        ({"frames": 0}, "frames: 0 is outside 1–512"),
        ({"steps": "many"}, "steps: 'many' is not a number"),
        ({"width": 100}, "width: 100 is not a multiple of 8"),
        ({"scheduler": "magic"}, "scheduler: 'magic' is not one of"),
        ({"base": "../../etc"}, "base '../../etc' is not in the models folder"),
        ({"loras": [{"id": "/etc/passwd", "scale": 1}]}, "lora '/etc/passwd' is not in the models folder"),
        ({"context_length": 8, "context_overlap": 8}, "context overlap: 8 must be less"),
        ({"prompt_map": [{"frame": 40, "prompt": "x"}]}, "keyframe 40 is past the last frame"),
        ({"path": "/tmp"}, "unknown field 'path'"),
        ({"clip_skip": 0}, "clip skip: 0 is outside 1–12"),
        ({"reference": "x.png", "pag_scale": 3}, "reference picture: not with a PAG scale"),
        ({"reference_mode": "attn"}, "reference mode: 'attn' is not one of"),
        ({"prompt_weighting": "compel"}, "prompt weighting: 'compel' is not one of"),
        ({"long_prompts": "wrap"}, "long prompts: 'wrap' is not one of"),
        ({"prompt_editing": "yes"}, "prompt editing: expected true or false"),
        ({"motion_scale_steps": "half:0"}, "motion scale from step 'half:0': expected FRACTION:SCALE"),
        ({"motion_scale_steps": "1.5:0"}, "1.5 is not a fraction of the steps"),
        ({"guidance_scale_steps": "0.5:-1"}, "guidance from step 0.5: -1.0 must be a number ≥ 0"),
        ({"freeu": "b1=1.3"}, "FreeU 'b1=1.3': give b1, b2, s1 and s2"),
        ({"pag_scale": 30}, "PAG scale: 30.0 is outside 0.0–20.0"),
        ({"hires_scale": 5}, "hires scale: 5.0 is outside 1.0–4.0"),
        ({"gradual_latent": "0.5"}, "gradual latent '0.5': give FRACTION:SCALE pairs"),
        ({"gradual_latent": "0:0.5, 0.7:0.9"}, "the last gradual latent scale must be 1"),
        ({"hires_scale": 2, "hires_strength": 0.1, "steps": 5}, "hires strength 0.1 leaves no step of 5 to run"),
        ({"prompt_travel_loop": "yes"}, "prompt travel loop: expected true or false"),
        ({"hires_scale": 2, "hires_upscaler": "esrgan"}, "hires upscaler 'esrgan': choose one of pixel, latent"),
        ({"regions": [{"mask": "", "prompt": "a cat"}]}, "region 1: upload its mask image"),
        ({"regions": "left half"}, r"regions: expected a list of \{mask, prompt\}"),
    ],
)
def test_the_form_is_checked_field_by_field(models_dir, fields, message):
    with pytest.raises(InputError, match=message):
        parse({"prompt": PROMPT, **fields}, scan(models_dir))


def test_controlnet_units_reach_the_controlnets_run_makes(models_dir):
    """Two ControlNet units, each with its scale, control video, control images, start and end, and guess mode: in
    the job's run entry, in order, and in the ControlNet specs that entry makes (the studio loads its ControlNets
    from that entry); a bad unit is one line naming it."""
    from animatediff.pipeline.control_inputs import ENTRY_KEYS, entry_specs
    from animatediff.prompt_entries import parse_entry
    from animatediff.ui.run_config import run_entry
    from animatediff.ui.settings import with_seed

    (models_dir / "ControlNet").mkdir(exist_ok=True)
    for name in ("edges", "depth"):
        (models_dir / "ControlNet" / f"{name}.safetensors").write_bytes(b"weights")
    catalog = scan(models_dir)
    units = [
        {"model": "ControlNet/edges.safetensors", "video": "upload-1", "scale": 0.6, "start": 0.2, "end": 0.7},
        {"model": "ControlNet/depth.safetensors", "video": "upload-2", "annotator": "canny"},
    ]
    fields = {"prompt": PROMPT, "controlnets": units, "guess_mode": True}
    entry = parse_entry(run_entry(with_seed(parse(fields, catalog)), catalog), "form")
    specs = entry_specs(*(getattr(entry, key) for key in ENTRY_KEYS.values()))
    assert [(c.model.rsplit("/", 1)[-1], c.video, c.scale, c.annotator, c.start, c.end) for c in specs] == [
        ("edges.safetensors", "upload-1", 0.6, "none", 0.2, 0.7),
        ("depth.safetensors", "upload-2", 1.0, "canny", 0.0, 1.0),
    ]
    assert all(c.guess_mode for c in specs)
    for bad, message in (
        ({"start": 0.7, "end": 0.2}, "ControlNet 2: ControlNet start 0.7 and end 0.2: need 0 ≤ start < end ≤ 1"),
        ({"end": 1.5}, "ControlNet 2 end: 1.5 is"),
        ({"video": ""}, "ControlNet 2: upload its control video"),
        ({"model": "ControlNet/none.safetensors"}, "not in the models folder"),
        ({"annotator": "openpose"}, "ControlNet 2 control images: 'openpose' is not one of"),
    ):
        with pytest.raises(InputError, match=re.escape(message)):
            parse(fields | {"controlnets": [units[0], units[1] | bad]}, catalog)
    for bad, message in (
        ({"guess_mode": "on"}, "guess mode: expected true or false, got 'on'"),
        ({"controlnets": [], "guess_mode": True}, "guess mode: add the ControlNet it is for"),
        ({"controlnets": "ControlNet/edges.safetensors"}, "ControlNets: expected a list of {model, video"),
    ):
        with pytest.raises(InputError, match=re.escape(message)):
            parse(fields | bad, catalog)


def test_history_stored_with_one_controlnet_loads_as_a_unit(tmp_path):
    from animatediff.ui.controls import ControlUnit
    from animatediff.ui.settings import read_settings

    stored = {"prompt": PROMPT, "controlnet": "ControlNet/edges", "controlnet_scale": 0.5, "control_video": "u1",
              "control_from_video": "canny", "seed": 3}  # fmt: skip
    (tmp_path / "old.json").write_text(json.dumps(stored))
    assert read_settings(tmp_path / "old.json").controlnets == [ControlUnit("ControlNet/edges", "u1", 0.5, "canny")]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"ip_adapter": "ipadapter/none.safetensors", "ip_image": "x"}, "ip adapter 'ipadapter/none.safetensors' is"),
        ({"image_encoder": "clip_vision/x"}, "image encoder: choose the IP-Adapter it is for"),
        ({"ip_scale": -1}, "IP-Adapter scale: -1.0 is outside 0.0–4.0"),
        ({"ip_adapter_2": "ipadapter/x", "ip_image_2": "u"}, "second image prompt: choose the first IP-Adapter too"),
    ],
)
def test_bad_image_prompts_are_one_line(models_dir, fields, message):
    with pytest.raises(InputError, match=message):
        parse({"prompt": PROMPT, **fields}, scan(models_dir))


def test_an_ip_adapter_without_its_image_is_refused(models_dir):
    (models_dir / "ipadapter").mkdir()
    (models_dir / "ipadapter" / "look.safetensors").write_bytes(b"weights")
    with pytest.raises(InputError, match="IP-Adapter: upload its image prompt"):
        parse({"prompt": PROMPT, "ip_adapter": "ipadapter/look.safetensors"}, scan(models_dir))
    first = {"prompt": PROMPT, "ip_adapter": "ipadapter/look.safetensors", "ip_image": "u1"}
    with pytest.raises(InputError, match="second IP-Adapter: upload its image prompt"):
        parse(first | {"ip_adapter_2": "ipadapter/look.safetensors"}, scan(models_dir))
    from animatediff.ui.run_config import run_entry

    catalog = scan(models_dir)
    assert "ip_adapters" not in run_entry(parse(first | {"ip_image_2": "u2"}, catalog), catalog)  # not chosen: unused
    with pytest.raises(InputError, match="second IP-Adapter scale: 5.0 is outside 0.0–4.0"):
        parse(first | {"ip_adapter_2": "ipadapter/look.safetensors", "ip_image_2": "u2", "ip_scale_2": 5},
              scan(models_dir))  # fmt: skip


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"loop": "yes"}, "loop: expected true or false, got 'yes'"),
        ({"motion_scale": -1}, "motion scale: -1.0 is"),
        ({"free_noise": True, "loop": True}, "free noise: FreeNoise replaces the sliding windows a loop needs"),
        ({"free_noise": True, "context_length": 2}, "FreeNoise"),
        ({"context_length": 8, "context_schedule": "composite"}, "context schedule: 'composite' is not one of"),
        ({"context_length": 8, "context_fuse": "average"}, "context fuse: 'average' is not one of"),
        ({"context_length": 8, "context_stride": 2}, "context stride 2: only the 'uniform' schedule takes strides"),
        ({"context_stride": 2}, "context stride needs context length"),
        ({"closed_loop": True}, "closed loop needs context length"),
        ({"free_noise": True, "context_fuse": "flat"}, "context fuse is for sliding context windows, which free noise"),
    ],
)
def test_bad_loop_and_motion_scale_are_one_line(models_dir, fields, message):
    with pytest.raises(InputError, match=message):
        parse({"prompt": PROMPT, **fields}, scan(models_dir))


def test_window_options_make_the_windows_their_run_entry_makes(models_dir, tmp_path):
    """The form's schedule, fuse, stride and closed loop: the windows the job samples in are those `animatediff run`
    makes from the job's run entry, and those `generate` makes from the same flags."""
    from animatediff.cli.context_options import context_from_args
    from animatediff.entry_sampling_keys import entry_context
    from animatediff.prompt_entries import load_prompt_config
    from animatediff.ui.run_config import run_yaml
    from animatediff.ui.settings import context_of, with_seed

    catalog = scan(models_dir)
    fields = {"prompt": PROMPT, "frames": 20, "context_length": 8, "context_overlap": 2, "context_schedule": "uniform",
              "context_stride": 2, "context_fuse": "relative", "closed_loop": True}  # fmt: skip
    s = with_seed(parse(fields, catalog))
    windows = context_of(s)
    assert (windows.schedule, windows.stride, windows.fuse, windows.closed_loop) == ("uniform", 2, "relative", True)
    (tmp_path / "job.yaml").write_text(run_yaml(s, catalog))
    (entry,), _ = load_prompt_config(tmp_path / "job.yaml")
    assert entry_context(entry, 20) == windows
    flags = "--frames 20 --context-length 8 --context-overlap 2 --context-schedule uniform --context-stride 2"
    flags += " --context-fuse relative --closed-loop"
    args = build_parser().parse_args(["generate", "--prompt", PROMPT, *flags.split()])
    assert context_from_args(args) == windows


def test_the_text_settings_and_pag_reach_the_run_entry(models_dir, tmp_path):
    from animatediff.prompt_entries import load_prompt_config
    from animatediff.ui.run_config import run_yaml
    from animatediff.ui.settings import with_seed

    catalog = scan(models_dir)
    for given, expected in (({}, 1), ({"clip_skip": None}, 1), ({"clip_skip": 2}, 2)):
        s = with_seed(parse({"prompt": PROMPT, **given}, catalog))
        (tmp_path / "job.yaml").write_text(run_yaml(s, catalog))
        (entry,), _ = load_prompt_config(tmp_path / "job.yaml")
        assert s.clip_skip == entry.clip_skip == expected
    for weighting in ("none", "a1111", "comfy"):
        s = with_seed(parse({"prompt": PROMPT, "prompt_weighting": weighting}, catalog))
        (tmp_path / "job.yaml").write_text(run_yaml(s, catalog))
        (entry,), _ = load_prompt_config(tmp_path / "job.yaml")
        assert s.prompt_weighting == entry.prompt_weighting == weighting
    for mode in ("truncate", "chunks"):
        s = with_seed(parse({"prompt": PROMPT, "long_prompts": mode}, catalog))
        (tmp_path / "job.yaml").write_text(run_yaml(s, catalog))
        (entry,), _ = load_prompt_config(tmp_path / "job.yaml")
        assert s.long_prompts == entry.long_prompts == mode
    s = with_seed(parse({"prompt": PROMPT, "prompt_2": "a blue square", "negative_prompt_2": "dark"}, catalog))
    (tmp_path / "job.yaml").write_text(run_yaml(s, catalog))
    (entry,), _ = load_prompt_config(tmp_path / "job.yaml")
    assert (entry.prompt_2, entry.n_prompt_2) == ("a blue square", "dark")
    s = with_seed(parse({"prompt": PROMPT}, catalog))
    assert "prompt_2" not in run_yaml(s, catalog)
    s = with_seed(parse({"prompt": PROMPT, "motion_scale_steps": "0.6: 0.5, 0.8 :0"}, catalog))
    (tmp_path / "job.yaml").write_text(run_yaml(s, catalog))
    (entry,), _ = load_prompt_config(tmp_path / "job.yaml")
    assert entry.motion_scale_steps == {0.6: 0.5, 0.8: 0.0}
    s = with_seed(parse({"prompt": PROMPT, "guidance_scale": 6, "guidance_scale_steps": "0.6: 1"}, catalog))
    (tmp_path / "job.yaml").write_text(run_yaml(s, catalog))
    (entry,), _ = load_prompt_config(tmp_path / "job.yaml")
    assert (entry.guidance_scale, entry.guidance_scale_steps) == (6, {0.6: 1.0})
    s = with_seed(parse({"prompt": PROMPT, "freeu": "b1=1.3, b2=1.4, s1=0.9, s2=0.2, form=comfy-v2"}, catalog))
    (tmp_path / "job.yaml").write_text(run_yaml(s, catalog))
    (entry,), _ = load_prompt_config(tmp_path / "job.yaml")
    assert entry.freeu == {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2, "form": "comfy-v2"}
    for editing in (False, True):
        s = with_seed(parse({"prompt": PROMPT, "prompt_editing": editing}, catalog))
        (tmp_path / "job.yaml").write_text(run_yaml(s, catalog))
        (entry,), _ = load_prompt_config(tmp_path / "job.yaml")
        assert s.prompt_editing == entry.prompt_editing == editing
    for pag_scale, expected in ((None, None), (2.5, 2.5)):
        s = with_seed(parse({"prompt": PROMPT, "pag_scale": pag_scale}, catalog))
        (tmp_path / "job.yaml").write_text(run_yaml(s, catalog))
        (entry,), _ = load_prompt_config(tmp_path / "job.yaml")
        assert s.pag_scale == entry.pag_scale == expected


def test_a_vae_from_the_vae_folder_reaches_the_models_and_the_run_entry(models_dir, tmp_path):
    from animatediff.prompt_entries import load_prompt_config
    from animatediff.ui.job_models import spec
    from animatediff.ui.run_config import run_yaml
    from animatediff.ui.settings import with_seed

    (models_dir / "VAE").mkdir()
    (models_dir / "VAE" / "vae-ft-mse.safetensors").write_bytes(b"weights")
    catalog = scan(models_dir)
    assert [c.id for c in catalog.choices["vae"]] == ["VAE/vae-ft-mse.safetensors"]
    s = with_seed(parse({"prompt": PROMPT, "vae": "VAE/vae-ft-mse.safetensors"}, catalog))
    assert spec(s, catalog).vae == str(models_dir.resolve() / "VAE" / "vae-ft-mse.safetensors")
    (tmp_path / "job.yaml").write_text(run_yaml(s, catalog))
    (entry,), _ = load_prompt_config(tmp_path / "job.yaml")
    assert entry.vae_path == spec(s, catalog).vae
    assert spec(with_seed(parse({"prompt": PROMPT}, catalog)), catalog).vae is None
    with pytest.raises(InputError, match="vae 'Lora/style.safetensors' is not in the models folder"):
        parse({"prompt": PROMPT, "vae": "Lora/style.safetensors"}, catalog)


def test_a_latent_hires_upscaler_and_composable_prompts_reach_the_run_entry(models_dir):
    from animatediff.entry_pipeline_args import entry_hires
    from animatediff.prompt_entries import parse_entry
    from animatediff.ui.run_config import run_entry
    from animatediff.ui.settings import with_seed

    catalog = scan(models_dir)
    fields = {"prompt": PROMPT, "hires_scale": 1.5, "hires_strength": 0.6, "hires_upscaler": "latent-nearest",
              "prompt_and": True}  # fmt: skip
    entry = parse_entry(run_entry(with_seed(parse(fields, catalog)), catalog), "form")
    assert entry.prompt_and
    assert (entry.hires_upscaler, entry_hires(entry).upscaler, entry_hires(entry).latent) == (
        "latent-nearest", "latent-nearest", True)  # fmt: skip


def test_a_regions_own_image_prompt_reaches_the_run_entry(models_dir, tmp_path):
    """With the IP-Adapter chosen; without one it is refused in one line. Stored settings keep the image."""
    from animatediff.prompt_entries import parse_entry
    from animatediff.ui.run_config import run_entry
    from animatediff.ui.settings import read_settings, with_seed

    (models_dir / "ipadapter").mkdir()
    (models_dir / "ipadapter" / "look.safetensors").write_bytes(b"weights")
    catalog = scan(models_dir)
    regions = [{"mask": "m", "prompt": "a cat", "image": "face"}, {"mask": "n", "prompt": "a dog"}]
    with pytest.raises(InputError, match="region image prompt: choose the IP-Adapter"):
        parse({"prompt": PROMPT, "regions": regions}, catalog)
    fields = {"prompt": PROMPT, "regions": regions, "ip_adapter": "ipadapter/look.safetensors", "ip_image": "look"}
    settings = with_seed(parse(fields, catalog))
    entry = parse_entry(run_entry(settings, catalog, lambda upload: f"/uploads/{upload}.png"), "form")
    assert entry.regions[0]["ip_image"] == ["/uploads/face.png"] and "ip_image" not in entry.regions[1]
    assert entry.ip_mask == ""
    masked = parse(fields | {"ip_mask": "half"}, catalog)
    entry = parse_entry(run_entry(with_seed(masked), catalog, lambda upload: f"/uploads/{upload}.png"), "form")
    assert entry.ip_mask == "/uploads/half.png"  # the image prompt's mask, an upload

    (tmp_path / "settings.json").write_text(json.dumps(settings.as_json()))
    assert read_settings(tmp_path / "settings.json").regions == [("m", "a cat", "face"), ("n", "a dog", "")]


def test_a_picture_to_start_from_and_its_last_frame_reach_the_run_entry(models_dir):
    from animatediff.prompt_entries import parse_entry
    from animatediff.ui.run_config import run_entry
    from animatediff.ui.settings import with_seed

    catalog = scan(models_dir)
    fields = {"prompt": PROMPT, "init_image": "first", "last_frame": "last", "latent_scale": 8, "strength": 0.6}
    entry = parse_entry(run_entry(with_seed(parse(fields, catalog)), catalog, lambda u: f"/up/{u}.png"), "form")
    assert entry.init_image == {"first": "/up/first.png", "latent_scale": 8.0, "last": "/up/last.png",
                                "latent_scale_last": 8.0}  # fmt: skip
    assert entry.strength == 0.6 and not entry.video
    with pytest.raises(InputError, match="last frame: upload the picture to start from too"):
        parse({"prompt": PROMPT, "last_frame": "last"}, catalog)
    with pytest.raises(InputError, match="latent scale: 0.0 is outside"):
        parse({"prompt": PROMPT, "init_image": "first", "latent_scale": 0}, catalog)


def test_the_second_image_prompts_mask_reaches_the_run_entry(models_dir):
    from animatediff.prompt_entries import parse_entry
    from animatediff.ui.run_config import run_entry
    from animatediff.ui.settings import with_seed

    (models_dir / "ipadapter").mkdir()
    (models_dir / "ipadapter" / "look.safetensors").write_bytes(b"weights")
    catalog = scan(models_dir)
    fields = {"prompt": PROMPT, "ip_adapter": "ipadapter/look.safetensors", "ip_image": "look"}
    second = {"ip_adapter_2": "ipadapter/look.safetensors", "ip_image_2": "style", "ip_mask_2": "other"}
    entry = parse_entry(run_entry(with_seed(parse(fields | second, catalog)), catalog, lambda u: f"/up/{u}.png"), "f")
    assert entry.ip_adapters[0]["ip_mask"] == "/up/other.png" and entry.ip_adapters[0]["ip_image"] == ["/up/style.png"]
    assert entry.ip_mask == ""  # the first's mask stays its own
    unmasked = parse(fields | second | {"ip_mask_2": ""}, catalog)
    assert "ip_mask" not in run_entry(with_seed(unmasked), catalog)["ip_adapters"][0]


def test_the_motion_attention_scale_and_its_mask_reach_the_jobs_run_entry(models_dir):
    from animatediff.prompt_entries import parse_entry
    from animatediff.ui.run_config import run_entry
    from animatediff.ui.settings import with_seed

    catalog = scan(models_dir)
    fields = {"prompt": PROMPT, "motion_attention_scale": 1.4, "motion_attention_mask": "upload-3"}
    entry = parse_entry(run_entry(with_seed(parse(fields, catalog)), catalog), "form")
    assert (entry.motion_attention_scale, entry.motion_attention_mask) == (1.4, "upload-3")
    plain = parse_entry(run_entry(with_seed(parse({"prompt": PROMPT}, catalog)), catalog), "form")
    assert (plain.motion_attention_scale, plain.motion_attention_mask) == (1.0, "")
    with pytest.raises(InputError, match=re.escape("motion attention scale: -1.0 is outside 0.0–4.0")):
        parse(fields | {"motion_attention_scale": -1}, catalog)
    with_free_noise = parse_entry(run_entry(with_seed(parse(fields | {"free_noise": True}, catalog)), catalog), "fm")
    assert with_free_noise.free_noise and with_free_noise.motion_attention_mask == "upload-3"


def test_a_loras_regions_make_it_a_region_lora_of_the_run_entry(models_dir):
    from animatediff.pipeline.region_loras import entry_region_loras
    from animatediff.prompt_entries import parse_entry
    from animatediff.ui.run_config import run_entry
    from animatediff.ui.settings import with_seed

    catalog = scan(models_dir)
    regions = [{"mask": "upload-1", "prompt": "a blue square"}, {"mask": "upload-2", "prompt": "a green cross"}]
    loras = [{"id": "world:outlined", "scale": 0.7, "regions": "2, background"}]
    fields = {"prompt": PROMPT, "regions": regions, "loras": loras}
    entry = parse_entry(run_entry(with_seed(parse(fields, catalog)), catalog), "form")
    (item,) = entry.lora_configs
    assert (item["alpha"], item["regions"], item["scale"]) == (0.7, [1, "background"], 0.7)
    (region_lora,) = entry_region_loras(entry.lora_configs)
    assert region_lora.regions == (1, "background") and region_lora.scale == 0.7
    everywhere = parse_entry(run_entry(with_seed(parse(fields | {"loras": [loras[0] | {"regions": ""}]}, catalog)),
                                       catalog), "form")  # fmt: skip
    assert "regions" not in everywhere.lora_configs[0] and entry_region_loras(everywhere.lora_configs) == []
    for bad, message in (
        ({"loras": [loras[0] | {"regions": "3"}]}, "LoRA 1 regions: '3' is not a region row (1 to 2) or background"),
        ({"loras": [loras[0] | {"regions": "0"}]}, "LoRA 1 regions: '0' is not a region row"),
        ({"regions": []}, "LoRA 1 regions: add the Regional prompts rows it acts in"),
    ):
        with pytest.raises(InputError, match=re.escape(message)):
            parse(fields | bad, catalog)


def test_the_ddim_eta_reaches_the_run_entry_and_other_schedulers_refuse_it(models_dir):
    from animatediff.entry_sampling_keys import entry_scheduler
    from animatediff.prompt_entries import parse_entry
    from animatediff.ui.run_config import run_entry
    from animatediff.ui.settings import with_seed

    catalog = scan(models_dir)
    entry = parse_entry(run_entry(with_seed(parse({"prompt": PROMPT, "ddim_eta": 0.4}, catalog)), catalog), "form")
    assert entry.ddim_eta == 0.4 and entry_scheduler(entry, "").config.eta == 0.4
    assert parse_entry(run_entry(with_seed(parse({"prompt": PROMPT}, catalog)), catalog), "form").ddim_eta is None
    with pytest.raises(InputError, match="a DDIM eta is for the ddim scheduler; this run samples with euler"):
        parse({"prompt": PROMPT, "ddim_eta": 0.4, "scheduler": "euler"}, catalog)
    with pytest.raises(InputError, match="DDIM eta: 2.0 is outside 0.0–1.0"):
        parse({"prompt": PROMPT, "ddim_eta": 2}, catalog)


def test_a_scale_per_block_reaches_the_run_entry(models_dir):
    from animatediff.prompt_entries import parse_entry
    from animatediff.ui.run_config import run_entry
    from animatediff.ui.settings import with_seed

    (models_dir / "ipadapter").mkdir()
    (models_dir / "ipadapter" / "look.safetensors").write_bytes(b"weights")
    catalog = scan(models_dir)
    fields = {"prompt": PROMPT, "ip_adapter": "ipadapter/look.safetensors", "ip_image": "look", "ip_scale": 0.7}
    blocks = fields | {"ip_scale_blocks": "{up: {block_1: [0, 1, 0]}}"}
    entry = parse_entry(run_entry(with_seed(parse(blocks, catalog)), catalog), "form")
    assert entry.ip_scale == {"up": {"block_1": [0.0, 1.0, 0.0]}}  # in place of the Scale field
    assert parse_entry(run_entry(with_seed(parse(fields, catalog)), catalog), "form").ip_scale == 0.7
    with pytest.raises(InputError, match="IP-Adapter scale per block: give the blocks"):
        parse(fields | {"ip_scale_blocks": "0.5"}, catalog)
    with pytest.raises(InputError, match="IP-Adapter scale per block: unknown part 'upper'"):
        parse(fields | {"ip_scale_blocks": "{upper: 1}"}, catalog)
    assert parse({"prompt": PROMPT, "ip_scale_blocks": "{upper: 1}"}, catalog).ip_scale_blocks  # unused: no check
