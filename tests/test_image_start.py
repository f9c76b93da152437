"""A start from a picture (`pipeline/image_start.py`, the A1111 AnimateDiff extension's img2vid): each frame's shares
of the first and last pictures, the clean clip they make with latent noise, diffusers' video-to-video of the still
clip where nothing is let go, and bad input."""

import re

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from animatediff.pipeline import ImageStart
from animatediff.pipeline.video_start import encode_video, video_clip, video_start
from tests.test_video_to_video import ARGS, PROMPT, _reference, _seed, _video


def test_the_shares_are_the_extensions_formula_the_last_frames_mirrored_and_normalised():
    first, last = ImageStart("a.png").shares(16)
    np.testing.assert_allclose(first, 1 - np.arange(16) / 32)  # power 1, scale 32: 1 down to 0.53
    np.testing.assert_array_equal(last, np.zeros(16))
    first, last = ImageStart("a.png", power=2, scale=9).shares(5)
    np.testing.assert_allclose(first, [1, 1 - 1 / 9, 1 - 4 / 9, 0, 0])  # 1 − 9/9 = 0, 1 − 16/9 clipped to 0
    first, last = ImageStart("a.png", "b.png", scale=4, last_scale=4).shares(6)
    raw_first, raw_last = np.clip(1 - np.arange(6) / 4, 0, None), np.clip(1 - np.arange(6)[::-1] / 4, 0, None)
    total = raw_first + raw_last
    np.testing.assert_allclose(first, np.where(total > 1, raw_first / total, raw_first))
    np.testing.assert_allclose(last, np.where(total > 1, raw_last / total, raw_last))
    assert last[-1] == 1 and first[0] == 1 and np.all(first + last <= 1 + 1e-12)


def test_nothing_let_go_is_diffusers_video_to_video_of_the_still_clip(make_pipeline, one_thread):
    ours = make_pipeline("v2")
    picture = _video(1)[0]
    still = np.repeat(picture[None], 6, axis=0)
    expected = _reference(ours)(prompt=PROMPT, video=still, strength=0.7, **ARGS, generator=_seed(),
                                output_type="np").frames  # fmt: skip
    kept = ImageStart(picture, scale=float("inf"))  # every frame keeps all of the picture: no noise drawn
    got = ours(PROMPT, video=kept, strength=0.7, num_frames=6, **ARGS, seed=7, progress=False)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    let_go = ours(PROMPT, video=ImageStart(picture, scale=3), strength=0.7, num_frames=6, **ARGS, seed=7,
                  progress=False)  # fmt: skip
    assert np.abs(let_go - got).max() > 1e-3  # frames let go to noise: another clip (what it keeps: the world's)


def test_the_clean_clip_is_each_frames_shares_of_the_pictures_and_noise(make_pipeline, one_thread):
    ours = make_pipeline("v2")
    first, last = _video(1, seed=2)[0], _video(1, seed=3)[0]
    start = ImageStart(first, last, power=1.5, scale=5, last_power=1, last_scale=3)
    clip = video_clip(start, 0.6, 6, 16, 16, num_inference_steps=5)
    _, latents, clean, noise = video_start(ours.vae, ours.scheduler, clip, 5, 1, _seed(3))
    generator = _seed(3)
    stills = encode_video(ours.vae, clip.frames, 1, generator)  # (1, 12, c, h, w): the first's still, the last's
    rest_noise = torch.randn(stills[:, :6].shape, generator=generator)
    a, b = (torch.tensor(s, dtype=torch.float32)[:, None, None, None] for s in start.shares(6))
    expected = a * stills[:, :6] + b * stills[:, 6:] + (1 - a - b) * rest_noise
    torch.testing.assert_close(clean, expected.permute(0, 2, 1, 3, 4), rtol=0, atol=1e-6)
    assert torch.isfinite(latents).all() and noise.shape == clean.shape


def test_bad_input_is_one_line(make_pipeline, tmp_path):
    with pytest.raises(InputError, match="image start scale 0 must be a number > 0"):
        ImageStart("a.png", scale=0)
    with pytest.raises(InputError, match="image start last_power -1 must be a finite number ≥ 0"):
        ImageStart("a.png", last_power=-1)
    ours = make_pipeline("v2")
    with pytest.raises(InputError, match="first frame picture not found"):
        ours(PROMPT, video=ImageStart(tmp_path / "missing.png"), num_frames=4, **ARGS, progress=False)
    with pytest.raises(InputError, match="a start from a picture has no video to keep"):
        ours(PROMPT, video=ImageStart(_video(1)[0]), video_mask=np.ones((16, 16)), num_frames=4, **ARGS,
             progress=False)  # fmt: skip


def test_generate_and_a_run_entry_draw_what_the_library_draws(tmp_path, base_folder, one_thread):
    import yaml
    from PIL import Image

    from animatediff.formats import save_motion_modules
    from animatediff.model_cache import ModelCache
    from animatediff.pipeline import AnimationPipeline
    from animatediff.prompt_config import run_prompt_config
    from tests.cli_helpers import assert_run_drew, generate
    from tests.tiny import tiny_motion

    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    for name, seed in (("first.png", 2), ("last.png", 3)):
        Image.fromarray((_video(1, seed)[0] * 255).astype(np.uint8)).save(tmp_path / name)
    extra = ["--init-image", str(tmp_path / "first.png"), "--last-frame", str(tmp_path / "last.png"),
             "--latent-scale", "3", "--latent-power-last", "2", "--strength", "0.75"]  # fmt: skip
    assert generate(base_folder, motion, tmp_path / "o.npy", *extra) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    start = ImageStart(tmp_path / "first.png", tmp_path / "last.png", scale=3, last_power=2)
    call = dict(num_frames=4, num_inference_steps=4, seed=3, progress=False)
    expected = pipe("a fox", "", **call, video=start, strength=0.75)[0]
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected)
    init_image = {"first": "first.png", "last": "last.png", "latent_scale": 3, "latent_power_last": 2}
    entry = {"motion_module": str(motion), "prompt": ["a fox"], "seed": 3, "steps": 4, "L": 4, "strength": 0.75,
             "init_image": init_image}  # fmt: skip
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump([entry]))
    run_prompt_config(tmp_path / "entry.yaml", base_folder, tmp_path / "runs", ModelCache(), progress=False)
    assert_run_drew(tmp_path / "runs", expected, tmp_path)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--last-frame", "b.png"], "--last-frame needs --init-image PICTURE"),
        (["--init-image", "{tmp}/a.png", "--video", "v.gif"], "give --video or --init-image to start from, not both"),
        (["--init-image", "{tmp}/a.png", "--latent-scale-last", "4"], "--latent-scale-last need --last-frame"),
        (["--init-image", "{tmp}/a.png", "--latent-scale", "0"], "image start scale 0.0 must be a number > 0"),
        (["--init-image", "{tmp}/missing.png"], "--init-image not found"),
        (["--init-image", "{tmp}/a.png", "--video-stride", "2"], "--video-stride needs --video INPUT"),
        (["--init-image", "{tmp}/a.png", "--strength", "0.1"], "--strength 0.1 leaves no step of 4 to run"),
    ],
)  # fmt: skip
def test_bad_cli_options_fail_in_one_line_before_loading(tmp_path, capsys, monkeypatch, extra, message):
    from PIL import Image

    from tests.cli_helpers import generate_error

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    err = generate_error(tmp_path, capsys, monkeypatch, *[e.replace("{tmp}", str(tmp_path)) for e in extra])
    assert message in err, err


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"init_image": "a.png", "video": "v.gif"}, "give video or init_image to start from, not both"),
        ({"init_image": {"last": "b.png"}}, "init_image takes a picture's path or {first: PATH"),
        ({"init_image": {"first": "a.png", "scale": 3}}, "init_image takes a picture's path"),
        ({"init_image": {"first": "a.png", "latent_scale": -1}}, "init_image: image start scale -1 must be"),
        ({"init_image": "a.png", "video_stride": 2}, "video_stride needs a video to start from"),
        ({"strength": 0.5}, "strength needs a video to start from"),
    ],
)
def test_bad_entry_keys_are_one_line(keys, message):
    from animatediff.prompt_entries import parse_entry

    with pytest.raises(InputError, match=re.escape(message)):
        parse_entry({"prompt": ["a fox"], **keys}, "entry 0")
