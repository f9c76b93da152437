"""`animatediff ui` without a browser: the catalog's path safety, the form's checks, the HTTP API (upload cap,
errors that leave the server serving), the queue (order, cancel, a failing job), history and the run YAML."""

import json
import re
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from animatediff.cli import build_parser
from animatediff.cli.ui import bind_address
from animatediff.errors import InputError
from animatediff.ui.catalog import scan
from animatediff.ui.settings import parse
from animatediff.ui.studio import Studio

PROMPT = "a red circle moving right on a blue background"


@pytest.fixture
def models_dir(tmp_path):
    root = tmp_path / "models"
    for sub in ("Stable-diffusion", "Lora", "motion_modules", "motion_lora", "ControlNet"):
        (root / sub).mkdir(parents=True)
    (root / "Lora" / "style.safetensors").write_bytes(b"not really")
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(b"outside")
    (root / "Lora" / "escape.safetensors").symlink_to(outside)
    (root / "Stable-diffusion" / "broken.safetensors").write_bytes(b"\x00" * 64)
    return root


@pytest.fixture
def served(tmp_path, models_dir):
    studio = Studio(models_dir, tmp_path / "out", upload_cap=65536)
    from animatediff.ui.server import make_server

    server = make_server(studio, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield studio, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    studio.close()


def call(url, data=None, raw=None):
    """(status, JSON) of a GET, or of a POST of `data` as JSON or `raw` bytes."""
    body = raw if raw is not None else None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, method="GET" if body is None and data is None else "POST")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait(url, job_id, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        _, job = call(f"{url}/api/jobs/{job_id}")
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['state']}")


def rerun(url, job, tmp_path, frames):  # noqa: ANN001, ANN201
    """(the text of the job's run YAML, the frames `animatediff run` draws from it)."""
    from animatediff.io.video_input import read_video_input
    from animatediff.prompt_config import run_prompt_config

    with urllib.request.urlopen(f"{url}/api/jobs/{job['id']}/config.yaml") as response:
        (tmp_path / "again.yaml").write_bytes(response.read())
    out = run_prompt_config(tmp_path / "again.yaml", "unused", tmp_path / f"samples-{job['id']}", progress=False)
    return (tmp_path / "again.yaml").read_text(), read_video_input(next((out / "sample").glob("*.gif")), frames)


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
    ],
)
def test_the_form_is_checked_field_by_field(models_dir, fields, message):
    with pytest.raises(InputError, match=message):
        parse({"prompt": PROMPT, **fields}, scan(models_dir))


def test_binds_to_loopback_unless_asked():
    parser = build_parser()
    assert bind_address(parser.parse_args(["ui"])) == "127.0.0.1"
    assert bind_address(parser.parse_args(["ui", "--listen"])) == "0.0.0.0"
    assert bind_address(parser.parse_args(["ui", "--host", "10.0.0.5"])) == "10.0.0.5"


def test_api_refuses_bad_input_and_keeps_serving(served):
    studio, url = served
    assert call(f"{url}/api/generate", {"prompt": ""}) == (400, {"error": "prompt: empty (say what to animate)"})
    status, body = call(f"{url}/api/generate", raw=b"{not json")
    assert status == 400 and "not valid JSON" in body["error"]
    status, body = call(f"{url}/api/upload?name=clip.mp4", raw=b"x" * 70000)
    assert (status, body) == (413, {"error": "upload of 68.4 KiB is over the 64.0 KiB cap"})
    status, body = call(f"{url}/api/upload?name=run.sh", raw=b"echo")
    assert status == 400 and "expected one of" in body["error"]
    status, body = call(f"{url}/api/upload?name=../../clip.gif", raw=b"GIF89a")
    assert status == 200 and studio.uploads.path(body["id"]).parent == studio.uploads.folder
    assert call(f"{url}/api/jobs/nope")[0] == 400
    assert call(f"{url}/api/state")[0] == 200


def test_queue_runs_in_order_cancels_and_survives_a_broken_model(served):
    studio, url = served
    small = {"prompt": PROMPT, "frames": 8, "steps": 4, "seed": 3}
    _, long = call(f"{url}/api/generate", {**small, "steps": 200})
    _, broken = call(f"{url}/api/generate", {**small, "dreambooth": "Stable-diffusion/broken.safetensors"})
    _, good = call(f"{url}/api/generate", small)
    assert (broken["position"], good["position"]) in ((1, 2), (2, 3))
    while call(f"{url}/api/jobs/{long['id']}")[1]["step"] < 1:
        time.sleep(0.05)
    call(f"{url}/api/jobs/{long['id']}/cancel", {})
    assert wait(url, long["id"])["state"] == "cancelled"
    failed = wait(url, broken["id"])
    assert failed["state"] == "error" and "\n" not in failed["error"] and "broken.safetensors" in failed["error"]
    done = wait(url, good["id"])
    assert done["state"] == "done" and done["step"] == done["total"] == 4
    assert [job.id for job in studio.queue.history] == [good["id"]]


def test_models_stay_loaded_and_a_lora_switch_reloads_nothing(served):
    studio, url = served
    small = {"prompt": PROMPT, "frames": 8, "steps": 2, "seed": 3}
    for loras in ([], [{"id": "world:outlined", "scale": 1.0}], [{"id": "world:outlined", "scale": 0.5}], []):
        _, job = call(f"{url}/api/generate", {**small, "loras": loras})
        assert wait(url, job["id"])["state"] == "done"
    assert studio.cache.loads["base"] == 1 and studio.cache.loads["lora"] == 1


def test_the_run_yaml_draws_the_same_frames_and_history_outlives_the_server(served, tmp_path):
    from animatediff.io.video_input import read_video_input
    from animatediff.prompt_config import run_prompt_config

    studio, url = served
    settings = {"prompt": PROMPT, "frames": 8, "steps": 3, "seed": 11, "scheduler": "euler"}
    settings |= {"motion_loras": [{"id": "world:up", "scale": 0.8}], "context_length": 6, "context_overlap": 2}
    _, job = call(f"{url}/api/generate", settings)
    job = wait(url, job["id"])
    assert job["state"] == "done", job["error"]
    with urllib.request.urlopen(f"{url}/api/jobs/{job['id']}/config.yaml") as response:
        (tmp_path / "again.yaml").write_bytes(response.read())
    out = run_prompt_config(tmp_path / "again.yaml", "unused", tmp_path / "samples", progress=False)
    ours = read_video_input(studio.output_dir / job["file"], 8)
    again = read_video_input(next((out / "sample").glob("*.gif")), 8)
    np.testing.assert_array_equal(ours, again)

    later = Studio(None, studio.output_dir)
    try:
        [kept] = later.queue.history
        assert kept.output.name == job["file"] and kept.settings.seed == 11
        assert kept.settings.motion_loras == [("world:up", 0.8)]
    finally:
        later.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "--port 70000: not a port (0–65535)"),
        (["--upload-cap", "0"], "--upload-cap 0.0: must be positive"),
        (["--models", "/no/such/folder"], "models folder not found: /no/such/folder"),
        (
            ["--offload", "model", "--device", "cpu"],
            "--offload model needs a GPU (--device cuda): on the CPU the models already sit in CPU memory",
        ),
        (["--ff-chunk", "0"], "--ff-chunk must be at least 1, got 0"),
    ],
)
def test_cli_refuses_bad_options_in_one_line(argv, message, capsys, tmp_path):
    from animatediff.cli import main

    assert main(["ui", "--output-dir", str(tmp_path / "out"), *argv]) == 2
    assert capsys.readouterr().err == f"animatediff ui: error: {message}\n"


def test_controlnet_and_sparsectrl_from_uploads_and_their_run_yaml(served, tmp_path):
    """A ControlNet over a control video and the embedded RGB SparseCtrl over a keyframe picture, both uploaded:
    they change the frames, and the run YAML draws the same ones."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel
    from PIL import Image

    from animatediff.io.video import save_video
    from animatediff.io.video_input import read_video_input
    from animatediff.world.layout import embedded_models

    studio, url = served
    unet = UNet2DConditionModel.from_pretrained(embedded_models().base / "unet", torch_dtype=torch.float32)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 32))  # 4×, as its VAE
    torch.manual_seed(0)
    for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
        torch.nn.init.normal_(block.weight, std=0.05)
    controlnet.save_pretrained(studio.models_dir / "ControlNet" / "world-control")
    studio.refresh()
    save_video(np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32), tmp_path / "control.gif")
    Image.fromarray(np.full((32, 32, 3), (200, 30, 30), np.uint8)).save(tmp_path / "first.png")
    _, control = call(f"{url}/api/upload?name=control.gif", raw=(tmp_path / "control.gif").read_bytes())
    _, first = call(f"{url}/api/upload?name=first.png", raw=(tmp_path / "first.png").read_bytes())

    plain = {"prompt": PROMPT, "frames": 8, "steps": 3, "seed": 4}
    steered = plain | {"controlnets": [{"model": "ControlNet/world-control", "scale": 0.7, "video": control["id"]}]}
    steered |= {"sparsectrl": "world:rgb", "keyframes": [{"frame": 0, "image": first["id"]}]}
    jobs = [wait(url, call(f"{url}/api/generate", fields)[1]["id"]) for fields in (plain, steered, steered)]
    assert [job["state"] for job in jobs] == ["done"] * 3, [job["error"] for job in jobs]
    frames = [read_video_input(studio.output_dir / job["file"], 8) for job in jobs]
    assert np.abs(frames[0] - frames[1]).max() > 0.05
    np.testing.assert_array_equal(frames[1], frames[2])
    assert studio.cache.loads["control"] == 2  # the ControlNet and the SparseCtrl, read once for both jobs
    np.testing.assert_array_equal(frames[1], rerun(url, jobs[1], tmp_path, 8)[1])


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


def test_a_preset_samples_as_its_card_says_and_its_run_yaml_agrees(served, tmp_path):
    """lightning-4step: trailing Euler; the page sends its scheduler, steps and guidance, the preset adds the
    spacing and betas; the run YAML names the preset and draws the same frames."""
    from animatediff.io.video_input import read_video_input
    from animatediff.ui.settings import Settings, sampling_of

    studio, url = served
    fields = {"prompt": PROMPT, "frames": 8, "seed": 2, "preset": "lightning-4step", "scheduler": "euler"}
    fields |= {"steps": 4, "guidance_scale": 1.0}
    assert call(f"{url}/api/generate", {**fields, "preset": "fastest"})[1]["error"].startswith("preset: 'fastest'")
    jobs = [wait(url, call(f"{url}/api/generate", f)[1]["id"]) for f in (fields, {**fields, "preset": ""})]
    assert [job["state"] for job in jobs] == ["done", "done"]
    frames = [read_video_input(studio.output_dir / job["file"], 8) for job in jobs]
    sampling = sampling_of(Settings(preset="lightning-4step", scheduler="euler", steps=4, guidance_scale=1.0))
    assert (sampling.timestep_spacing, sampling.beta_schedule) == ("trailing", "linear")
    # The world base samples trailing already (zero terminal SNR), and on AnimateDiff's linear betas: the same frames.
    np.testing.assert_array_equal(frames[0], frames[1])
    text, again = rerun(url, jobs[0], tmp_path, 8)
    assert "preset: lightning-4step" in text
    np.testing.assert_array_equal(frames[0], again)


def test_an_image_prompt_from_an_upload_and_its_run_yaml(served, tmp_path):
    """An IP-Adapter from ipadapter/ with its image encoder beside it, and one from clip_vision/: the image prompt
    changes the frames, scale 0 is the text alone, and the run YAML draws the same frames."""
    import shutil

    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from animatediff.io.video_input import read_video_input
    from animatediff.world.layout import embedded_models
    from tests.test_ip_adapter import sample_image, tiny_image_encoder, tiny_ip_adapter

    studio, url = served
    unet = UNet2DConditionModel.from_pretrained(embedded_models().base / "unet", torch_dtype=torch.float32)
    folder = studio.models_dir / "ipadapter"
    folder.mkdir()
    save_file(tiny_ip_adapter(unet), str(folder / "look.safetensors"))
    tiny_image_encoder(folder / "image_encoder")
    shutil.copytree(folder / "image_encoder", studio.models_dir / "clip_vision" / "tiny-clip")
    studio.refresh()
    assert [c.id for c in studio.catalog.choices["ip_adapter"]] == ["ipadapter/look.safetensors"]
    assert [c.id for c in studio.catalog.choices["image_encoder"]] == ["clip_vision/tiny-clip"]
    sample_image(3).save(tmp_path / "look.png")
    _, image = call(f"{url}/api/upload?name=look.png", raw=(tmp_path / "look.png").read_bytes())

    plain = {"prompt": PROMPT, "frames": 8, "steps": 3, "seed": 4}
    looked = plain | {"ip_adapter": "ipadapter/look.safetensors", "ip_image": image["id"], "ip_scale": 0.8}
    named = looked | {"image_encoder": "clip_vision/tiny-clip"}
    asks = (plain, looked, named, looked | {"ip_scale": 0})
    jobs = [wait(url, call(f"{url}/api/generate", fields)[1]["id"]) for fields in asks]
    assert [job["state"] for job in jobs] == ["done"] * 4, [job["error"] for job in jobs]
    frames = [read_video_input(studio.output_dir / job["file"], 8) for job in jobs]
    assert np.abs(frames[0] - frames[1]).max() > 0.05
    np.testing.assert_array_equal(frames[1], frames[2])  # the same encoder, found beside the file or named
    np.testing.assert_array_equal(frames[0], frames[3])
    text, again = rerun(url, jobs[2], tmp_path, 8)
    assert "ip_scale: 0.8" in text
    np.testing.assert_array_equal(frames[2], again)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"ip_adapter": "ipadapter/none.safetensors", "ip_image": "x"}, "ip adapter 'ipadapter/none.safetensors' is"),
        ({"image_encoder": "clip_vision/x"}, "image encoder: choose the IP-Adapter it is for"),
        ({"ip_scale": -1}, "IP-Adapter scale: -1.0 is outside 0.0–4.0"),
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


def test_a_loop_with_a_motion_scale_and_free_noise_and_their_run_yaml(served, tmp_path):
    """A seamless loop (generate --loop's windows) at motion scale 1.3, and FreeNoise over 8-frame windows, each
    change the frames, and each run YAML draws the same ones."""
    from animatediff.io.video_input import read_video_input

    studio, url = served
    plain = {"prompt": PROMPT, "frames": 12, "steps": 3, "seed": 4}
    looped = plain | {"loop": True, "motion_scale": 1.3}
    free_noise = plain | {"free_noise": True, "context_length": 8}
    jobs = [wait(url, call(f"{url}/api/generate", fields)[1]["id"]) for fields in (plain, looped, free_noise)]
    assert [job["state"] for job in jobs] == ["done"] * 3, [job["error"] for job in jobs]
    frames = [read_video_input(studio.output_dir / job["file"], 12) for job in jobs]
    assert np.abs(frames[0] - frames[1]).max() > 0.05 and np.abs(frames[0] - frames[2]).max() > 0.05
    for job, drawn, key in ((jobs[1], frames[1], "loop: true"), (jobs[2], frames[2], "free_noise: true")):
        text, again = rerun(url, job, tmp_path, 12)
        assert key in text
        np.testing.assert_array_equal(drawn, again)


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


def test_memory_options_reach_every_job_and_keep_its_frames(tmp_path):
    """`animatediff ui --ff-chunk 2 --vae-slicing 1 --free-text-encoder`: the studio's pipelines run with them, and the
    frames are those of a studio without them, up to float rounding."""
    from animatediff.io.video_input import read_video_input
    from animatediff.pipeline.memory import MemoryOptions
    from animatediff.ui.jobs import Job
    from animatediff.ui.settings import with_seed

    memory = MemoryOptions(vae_slicing=1, ff_chunk=2, free_text_encoder=True)
    frames = []
    for options in (None, memory):
        studio = Studio(None, tmp_path / f"out-{options is None}", memory=options)
        try:
            settings = with_seed(parse({"prompt": PROMPT, "frames": 8, "steps": 3, "seed": 4}, studio.catalog))
            frames.append(read_video_input(studio.generate(Job("j", settings)), 8))
            assert studio.cache.memory is options
        finally:
            studio.close()
    # The same up to float rounding (the chunked feed-forward sums in another order); through the GIF's palette a
    # rounding now and then picks a neighbouring colour.
    assert np.abs(frames[0] - frames[1]).mean() < 1e-4 and (frames[0] != frames[1]).mean() < 0.01
