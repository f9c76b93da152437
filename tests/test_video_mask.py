"""Video inpainting (`video_mask`, `pipeline/video_mask.py`): the clip drawn anew where the mask is white and the
input video kept where it is black, as diffusers' inpainting keeps it with a UNet of 4 input channels."""

import numpy as np
import pytest

from animatediff.errors import InputError, InputNotFound
from animatediff.pipeline.video_start import VideoClip, video_start
from animatediff.sampling import FreeInit, make_scheduler
from animatediff.sampling.free_init import seeded_generator
from tests.test_ui import PROMPT as UI_PROMPT
from tests.test_ui import call, rerun, served, wait  # noqa: F401
from tests.test_video_to_video import ARGS, PROMPT, _reference, _seed, _video
from tests.tiny import tiny_motion


def right_half(size: int = 16) -> np.ndarray:
    mask = np.zeros((size, size))
    mask[:, size // 2 :] = 1
    return mask


@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_frames_equal_diffusers_video_to_video_with_the_kept_part_put_back_after_each_step(
    make_pipeline, one_thread, scheduler
):
    """diffusers' AnimateDiffVideoToVideoPipeline, its latents after each step blended through
    `callback_on_step_end` with its own start's clean latents and noise (caught from its `add_noise`), noised to the
    next timestep (clean after the last), as its inpainting pipelines blend them."""
    ours = make_pipeline("v2")
    ours.scheduler = make_scheduler(scheduler)
    reference = _reference(ours)
    video, mask = _video(4), {0: right_half(), 2: 1 - right_half()}
    caught = []
    add_noise = reference.scheduler.add_noise

    def catch(clean, noise, t):  # noqa: ANN001, ANN202
        caught.append((clean.permute(0, 2, 1, 3, 4), noise.permute(0, 2, 1, 3, 4)))  # diffusers' (b, f, c, h, w)
        return add_noise(clean, noise, t)

    from animatediff.pipeline.masks import fitted_masks

    drawn = fitted_masks(mask, 4, 16, 16, (8, 8), "video")

    def blend(pipe, i, t, kwargs):  # noqa: ANN001, ANN202
        clean, noise = caught[0]
        schedule = list(pipe.scheduler.timesteps)
        at = [k for k, s in enumerate(schedule) if s == t][-1]
        kept = clean if at + 1 == len(schedule) else add_noise(clean, noise, schedule[at + 1].reshape(1))
        return {"latents": kwargs["latents"] * drawn + kept * (1 - drawn)}

    reference.scheduler.add_noise = catch
    expected = reference(prompt=PROMPT, video=video, strength=0.8, **ARGS, generator=_seed(), output_type="np",
                         callback_on_step_end=blend).frames  # fmt: skip
    call = dict(video=video, strength=0.8, num_frames=4, seed=7, progress=False, **ARGS)
    got = ours(PROMPT, video_mask=mask, **call)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    plain = ours(PROMPT, **call)
    assert np.abs(got - plain).max() > 1e-2


def test_a_white_mask_is_plain_video_to_video_and_a_black_one_keeps_the_video(make_pipeline, one_thread):
    ours = make_pipeline("v2")
    video = _video(4)
    call = dict(video=video, strength=0.6, num_frames=4, seed=3, progress=False, **ARGS)
    plain = ours(PROMPT, **call)
    np.testing.assert_array_equal(ours(PROMPT, video_mask=np.ones((16, 16)), **call), plain)
    kept = ours(PROMPT, video_mask=np.zeros((16, 16)), **call)
    # the start's own clean latents (the VAE posterior sampled by the seed's generator), decoded
    _, _, clean, _ = video_start(ours.vae, ours.scheduler, VideoClip(video, 0.6), 5, 1, seeded_generator(3))
    np.testing.assert_allclose(kept, ours.decode(clean), rtol=0, atol=1e-6)
    assert np.abs(plain - kept).max() > 1e-2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"video": None}, "video_mask needs a video to keep"),
        ({"free_init": FreeInit(2), "strength": 1.0}, "video_mask keeps the video at every step"),
        ({"video_mask": "missing.png"}, "video mask: file not found"),
    ],
)
def test_bad_video_masks_are_one_line(make_pipeline, args, message):
    call = dict(video=_video(4), video_mask=right_half(), num_frames=4, progress=False, **ARGS) | args
    with pytest.raises((InputError, InputNotFound), match=message):
        make_pipeline("v2")(PROMPT, **call)


def test_the_cli_and_a_run_entry_draw_what_the_library_draws(tmp_path, base_folder, one_thread):
    import yaml
    from PIL import Image

    from animatediff.formats import save_motion_modules
    from animatediff.model_cache import ModelCache
    from animatediff.pipeline import AnimationPipeline
    from animatediff.prompt_config import run_prompt_config
    from tests.cli_helpers import assert_run_drew, generate
    from tests.test_video_to_video_cli import _input

    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    video = _input(tmp_path / "in.gif")
    Image.fromarray(np.uint8(right_half() * 255)).save(tmp_path / "mask.png")
    extra = ["--video", str(video), "--strength", "0.75", "--video-mask", str(tmp_path / "mask.png")]
    assert generate(base_folder, motion, tmp_path / "o.npy", *extra) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    call = dict(num_frames=4, num_inference_steps=4, seed=3, progress=False, video=video, strength=0.75)
    expected = pipe("a fox", "", video_mask=str(tmp_path / "mask.png"), **call)[0]
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected)
    assert np.abs(expected - pipe("a fox", "", **call)[0]).max() > 1e-2

    entry = {"motion_module": str(motion), "prompt": ["a fox"], "seed": 3, "steps": 4, "L": 4, "video": str(video),
             "strength": 0.75, "video_mask": str(tmp_path / "mask.png")}  # fmt: skip
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump([entry]))
    run_prompt_config(tmp_path / "entry.yaml", base_folder, tmp_path / "runs", ModelCache(), progress=False)
    assert_run_drew(tmp_path / "runs", expected, tmp_path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--video-mask", "{tmp}/mask.png"], "--video-mask needs --video INPUT"),
        (["--video", "{tmp}/in.gif", "--video-mask", "{tmp}/nowhere.png"], "video mask: file not found"),
        (["--video", "{tmp}/in.gif", "--video-mask", "{tmp}/mask.png", "--free-init", "2", "--strength", "1"],
         "video_mask keeps the video at every step"),
    ],
)  # fmt: skip
def test_bad_video_mask_options_fail_in_one_line_before_loading(tmp_path, capsys, monkeypatch, extra, message):
    from PIL import Image

    from tests.cli_helpers import generate_error
    from tests.test_video_to_video_cli import _input

    _input(tmp_path / "in.gif")
    Image.fromarray(np.uint8(right_half() * 255)).save(tmp_path / "mask.png")
    err = generate_error(tmp_path, capsys, monkeypatch, *[e.format(tmp=tmp_path) for e in extra])
    assert message in err, err


def test_a_video_mask_entry_without_a_video_is_one_line(tmp_path):
    import yaml

    from animatediff.prompt_config import load_prompt_config

    (tmp_path / "c.yaml").write_text(yaml.safe_dump([{"motion_module": "m", "prompt": ["a"], "video_mask": "m.png"}]))
    with pytest.raises(InputError, match="video_mask needs a video to start from"):
        load_prompt_config(tmp_path / "c.yaml")


def test_the_web_form_inpaints_an_uploaded_video_and_its_run_yaml(served, tmp_path):  # noqa: F811
    import io

    from PIL import Image

    from animatediff.io.video import save_video
    from animatediff.io.video_input import read_video_input

    studio, url = served
    clip = save_video(np.random.default_rng(0).random((6, 32, 32, 3), dtype=np.float32), tmp_path / "in.gif")
    _, video = call(f"{url}/api/upload?name=in.gif", raw=clip.read_bytes())
    png = io.BytesIO()
    Image.fromarray(np.uint8(right_half(32) * 255)).save(png, format="PNG")
    _, mask = call(f"{url}/api/upload?name=mask.png", raw=png.getvalue())
    plain = {"prompt": UI_PROMPT, "frames": 6, "steps": 4, "seed": 4, "video": video["id"], "strength": 0.75}
    jobs = [wait(url, call(f"{url}/api/generate", f)[1]["id"]) for f in (plain, plain | {"video_mask": mask["id"]})]
    assert [job["state"] for job in jobs] == ["done"] * 2, [job["error"] for job in jobs]
    frames = [read_video_input(studio.output_dir / job["file"], 6) for job in jobs]
    assert np.abs(frames[0] - frames[1]).max() > 0.05
    text, again = rerun(url, jobs[1], tmp_path, 6)
    assert "video_mask:" in text
    np.testing.assert_array_equal(frames[1], again)
    status, body = call(f"{url}/api/generate", {"prompt": UI_PROMPT, "video_mask": mask["id"]})
    assert (status, body) == (400, {"error": "video mask: upload the video it masks"})
