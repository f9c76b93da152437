"""`animatediff ui` without a browser: the HTTP API (upload cap, errors that leave the server serving), the queue
(order, cancel, a failing job), history, the run YAML, and what each feature's job draws (the form's own checks:
`test_ui_form.py`)."""

import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from animatediff.cli import build_parser
from animatediff.cli.ui import bind_address
from animatediff.ui.settings import parse
from animatediff.ui.studio import Studio

PROMPT = "a red circle moving right on a blue background"


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

    # A second image at frame 7: the image embedding travels from the first to it, and the run YAML keys both.
    sample_image(5).save(tmp_path / "later.png")
    _, later = call(f"{url}/api/upload?name=later.png", raw=(tmp_path / "later.png").read_bytes())
    keyed = wait(
        url, call(f"{url}/api/generate", looked | {"ip_keyframes": [{"frame": 7, "image": later["id"]}]})[1]["id"]
    )
    assert keyed["state"] == "done", keyed["error"]
    travelled = read_video_input(studio.output_dir / keyed["file"], 8)
    assert np.abs(travelled - frames[1]).max() > 0.05
    text, again = rerun(url, keyed, tmp_path, 8)
    assert "ip_image:\n    0:" in text and "\n    7:" in text
    np.testing.assert_array_equal(travelled, again)
    bad = looked | {"ip_keyframes": [{"frame": 0, "image": later["id"]}]}
    assert call(f"{url}/api/generate", bad) == (400, {"error": "IP-Adapter keyframes: each frame once, from 0 to 7 "
                                                                "(the image prompt is 0's)"})  # fmt: skip

    # A second image prompt at once, through a second IP-Adapter: it changes the frames, and its run YAML lists it.
    save_file(tiny_ip_adapter(unet, seed=3), str(folder / "style.safetensors"))
    studio.refresh()
    second = looked | {"ip_adapter_2": "ipadapter/style.safetensors", "ip_image_2": later["id"], "ip_scale_2": 0.7}
    both = wait(url, call(f"{url}/api/generate", second)[1]["id"])
    assert both["state"] == "done", both["error"]
    drawn = read_video_input(studio.output_dir / both["file"], 8)
    assert np.abs(drawn - frames[1]).max() > 0.05
    text, again = rerun(url, both, tmp_path, 8)
    assert "ip_adapters:\n" in text and "ip_scale: 0.7" in text
    np.testing.assert_array_equal(drawn, again)


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


def test_a_hires_fix_and_keyframes_going_round_and_their_run_yaml(served, tmp_path):
    """The hires fix draws the clip 1.5 times larger (its second pass counted in the job's steps), and its run YAML
    draws the same frames, as the gradual latent hires fix's does; prompt travel with its keyframes going round
    changes the frames and says so in its YAML."""
    from animatediff.io.video_input import read_video_input

    studio, url = served
    plain = {"prompt": PROMPT, "frames": 6, "steps": 4, "seed": 4}
    hires = plain | {"hires_scale": 1.5, "hires_strength": 0.5}
    travel = {**plain, "prompt": "", "prompt_map": [{"frame": 0, "prompt": PROMPT}, {"frame": 4, "prompt": "a blue "
              "square moving up on a black background"}]}  # fmt: skip
    looped = travel | {"prompt_travel_loop": True}
    gradual = plain | {"gradual_latent": "0:0.5, 0.5:1"}
    jobs = [wait(url, call(f"{url}/api/generate", fields)[1]["id"]) for fields in (hires, travel, looped, gradual)]
    assert [job["state"] for job in jobs] == ["done"] * 4, [job["error"] for job in jobs]
    assert jobs[0]["total"] == 4 + 2
    frames = [read_video_input(studio.output_dir / job["file"], 6) for job in jobs]
    assert frames[0].shape == (6, 48, 48, 3)
    assert np.abs(frames[1] - frames[2]).max() > 0.05
    text, again = rerun(url, jobs[0], tmp_path, 6)
    assert "hires_scale: 1.5" in text
    np.testing.assert_array_equal(frames[0], again)
    with urllib.request.urlopen(f"{url}/api/jobs/{jobs[2]['id']}/config.yaml") as response:
        assert "prompt_travel_loop: true" in response.read().decode()
    text, again = rerun(url, jobs[3], tmp_path, 6)
    assert "gradual_latent:" in text and "0.5: 1.0" in text
    np.testing.assert_array_equal(read_video_input(studio.output_dir / jobs[3]["file"], 6), again)


def test_a_reference_picture_from_an_upload_and_its_run_yaml(served, tmp_path):
    """Reference-only from the form: the uploaded picture changes the frames, and the run YAML draws the same; a mode
    or a style fidelity out of range is one line."""
    from PIL import Image

    from animatediff.io.video_input import read_video_input

    studio, url = served
    picture = np.zeros((32, 32, 3), dtype=np.uint8)
    picture[8:24, 8:24] = (255, 255, 0)
    Image.fromarray(picture).save(tmp_path / "look.png")
    _, image = call(f"{url}/api/upload?name=look.png", raw=(tmp_path / "look.png").read_bytes())
    plain = {"prompt": PROMPT, "frames": 8, "steps": 3, "seed": 4}
    referenced = plain | {"reference": image["id"], "reference_mode": "adain+attn", "reference_fidelity": 0.25}
    jobs = [wait(url, call(f"{url}/api/generate", fields)[1]["id"]) for fields in (plain, referenced)]
    assert [job["state"] for job in jobs] == ["done"] * 2, [job["error"] for job in jobs]
    frames = [read_video_input(studio.output_dir / job["file"], 8) for job in jobs]
    assert np.abs(frames[0] - frames[1]).max() > 0.05
    text, again = rerun(url, jobs[1], tmp_path, 8)
    assert "adain: true" in text and "style_fidelity: 0.25" in text
    np.testing.assert_array_equal(frames[1], again)
    for bad, message in (({"reference_mode": "attn"}, "reference mode"), ({"reference_fidelity": 2}, "style fidelity")):
        status, answer = call(f"{url}/api/generate", referenced | bad)
        assert status == 400 and message in answer["error"], answer


def test_a_picture_to_start_from_uploaded_and_its_run_yaml(served, tmp_path):
    """The picture start (the A1111 extension's img2vid) from an uploaded picture (the plain clip's first frame
    mirrored): the clip's object begins where the picture's is, and the run YAML draws the same frames; a picture
    beside a video is one line."""
    from PIL import Image

    from animatediff.io.video_input import read_video_input
    from animatediff.world.metrics import track

    studio, url = served
    plain = {"prompt": PROMPT, "frames": 8, "steps": 4, "seed": 5}
    first_clip = wait(url, call(f"{url}/api/generate", plain)[1]["id"])
    picture = read_video_input(studio.output_dir / first_clip["file"], 8)[0][:, ::-1]  # mirrored: the object elsewhere
    Image.fromarray((picture * 255).round().astype(np.uint8)).save(tmp_path / "first.png")
    _, first = call(f"{url}/api/upload?name=first.png", raw=(tmp_path / "first.png").read_bytes())
    started = plain | {"init_image": first["id"], "latent_scale": 32, "strength": 0.5}
    jobs = [first_clip, wait(url, call(f"{url}/api/generate", started)[1]["id"])]
    assert jobs[1]["state"] == "done", jobs[1]["error"]
    frames = [read_video_input(studio.output_dir / job["file"], 8) for job in jobs]
    target = track(picture[None]).x[0]  # the object's centre, across
    near = [abs(track(clip[:1]).x[0] - target) for clip in frames]
    assert near[1] < 0.5 * near[0], near
    np.testing.assert_array_equal(frames[1], rerun(url, jobs[1], tmp_path, 8)[1])
    error = call(f"{url}/api/generate", started | {"video": first["id"]})[1]["error"]
    assert error == "picture to start from: give a video or a picture to start from, not both"
