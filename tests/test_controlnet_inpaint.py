"""ControlNet inpaint's condition (`--control-from-video inpaint`): the frames blanked to -1 where the video mask is
white, passed through to the ControlNet as diffusers passes it (the frames of its AnimateDiffControlNetPipeline), and
made from the video mask by `generate` and a run entry; what is missing is one line before loading."""

import numpy as np
import pytest
import torch
from PIL import Image

from animatediff.errors import InputError
from animatediff.pipeline.annotators import MASKED, annotate, inpaint_condition
from animatediff.pipeline.controlnet import ControlNet, control_frames_tensor
from tests.controlnet_helpers import tiny_controlnet
from tests.test_controlnet_parity import check, control_frames, run_both


def test_the_condition_is_the_frames_blanked_where_the_mask_is_white():
    frames = np.random.default_rng(0).random((2, 4, 4, 3)).astype(np.float32)
    mask = np.zeros((2, 4, 4), np.float32)
    mask[0, :2] = 1.0
    mask[1, :, 3] = 0.6  # white enough
    got = inpaint_condition(frames, mask)
    assert (got[0, :2] == MASKED).all() and (got[1, :, 3] == MASKED).all()
    np.testing.assert_array_equal(got[0, 2:], frames[0, 2:])
    np.testing.assert_array_equal(got[1, :, :3], frames[1, :, :3])
    np.testing.assert_array_equal(annotate(frames, "inpaint", mask), got)
    with pytest.raises(InputError, match="annotator inpaint blanks the video mask's white area"):
        annotate(frames, "inpaint")
    with pytest.raises(InputError, match="inpaint: a mask of"):
        inpaint_condition(frames, mask[:1])
    assert control_frames_tensor(got).min() == MASKED  # the mark passes; other negatives do not
    with pytest.raises(InputError, match=r"control frames must be finite and in \[0, 1\] \(or -1 where masked"):
        control_frames_tensor(got * 0.5)


def test_resized_for_smaller_latents_the_marks_stay_marks():
    """The gradual latent hires fix's smaller latents: the picture resized bicubic, the marks nearest."""
    from animatediff.pipeline.controlnet import sized_control

    frames = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    frames[:, :, :, 8:] = MASKED
    small = sized_control(frames, torch.zeros(1, 4, 2, 4, 4), 2)  # 8 × 8 images for 4 × 4 latents
    assert (small[:, :, :, 4:] == MASKED).all() and (small[:, :, :, :4] >= 0).all()
    assert torch.equal(sized_control(frames, torch.zeros(1, 4, 2, 8, 8), 2), frames)


def test_the_marked_condition_matches_diffusers_animatediff_controlnet(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    frames = control_frames(3)
    frames[:, :, 4:12, 4:12] = MASKED  # a square blanked in every frame
    check(*run_both(pipe, [ControlNet(tiny_controlnet(pipe.unet.unet), frames, scale=0.8)]))


def test_generate_and_a_run_entry_make_it_from_the_video_mask(tmp_path, base_folder, one_thread):
    import yaml

    from animatediff.formats import save_motion_modules
    from animatediff.io.video import save_video
    from animatediff.model_cache import ModelCache
    from animatediff.pipeline import AnimationPipeline
    from animatediff.prompt_config import run_prompt_config
    from tests.cli_helpers import assert_run_drew, generate
    from tests.tiny import tiny_motion, tiny_unet

    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    tiny_controlnet(tiny_unet()).save_pretrained(tmp_path / "inpaint")
    video = save_video(np.random.default_rng(1).random((4, 16, 16, 3)).astype(np.float32), tmp_path / "v.gif", fps=8)
    mask = np.zeros((16, 16), np.uint8)
    mask[:, 8:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    options = ["--video", str(video), "--video-mask", str(tmp_path / "mask.png"), "--strength", "1"]
    options += ["--controlnet", str(tmp_path / "inpaint"), "--control-video", str(video)]
    assert generate(base_folder, motion, tmp_path / "o.npy", *options, "--control-from-video", "inpaint") == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    from animatediff.io.video_input import read_video_input

    condition = read_video_input(video, 4).copy()
    condition[:, :, 8:] = MASKED
    control = ControlNet(tiny_controlnet(tiny_unet()), condition)
    call = dict(num_frames=4, num_inference_steps=4, seed=3, progress=False, video=str(video), strength=1.0)
    expected = pipe("a fox", "", **call, video_mask=str(tmp_path / "mask.png"), controlnets=[control])[0]
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), expected, rtol=0, atol=1e-5)
    entry = {"motion_module": str(motion), "prompt": ["a fox"], "seed": 3, "steps": 4, "L": 4, "video": "v.gif",
             "video_mask": "mask.png", "strength": 1.0, "controlnet": ["inpaint"], "control_video": ["v.gif"],
             "control_from_video": ["inpaint"]}  # fmt: skip
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump([entry]))
    run_prompt_config(tmp_path / "entry.yaml", base_folder, tmp_path / "runs", ModelCache(), progress=False)
    assert_run_drew(tmp_path / "runs", expected, tmp_path)


def test_without_the_video_mask_it_is_one_line(tmp_path, capsys, monkeypatch):
    from animatediff.io.video import save_video
    from animatediff.prompt_entries import parse_entry
    from tests.cli_helpers import generate_error

    video = save_video(np.zeros((4, 16, 16, 3), np.float32), tmp_path / "v.gif", fps=8)
    options = ["--controlnet", "cn", "--control-video", str(video), "--control-from-video", "inpaint"]
    assert "annotator inpaint blanks the video mask's white area" in generate_error(tmp_path, capsys, monkeypatch,
                                                                                   *options)  # fmt: skip
    with pytest.raises(InputError, match="entry 0: annotator inpaint blanks the video mask's white area"):
        parse_entry({"prompt": ["a"], "controlnet": "cn", "control_video": "v.gif", "control_from_video": "inpaint"},
                    "entry 0")  # fmt: skip
    with pytest.raises(InputError, match="annotator 'inpaint': choose one of canny, lineart, color, none"):
        parse_entry({"prompt": ["a"], "keyframe_controlnets": [{"model": "cn", "images": "p",
                                                                "annotator": "inpaint"}]}, "entry 0")  # fmt: skip
