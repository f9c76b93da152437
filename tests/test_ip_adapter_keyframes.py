"""IP-Adapter images at keyframes ({frame: image}, animatediff-cli-prompt-travel's `ip_adapter_map`): each frame's
image embedding interpolated between the keyframes' as prompt travel interpolates text; against diffusers'
AnimateDiffPipeline with its own IP-Adapter layers given the same per-frame image tokens."""

import re

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from animatediff.pipeline.ip_adapter import IPAdapter
from animatediff.pipeline.ip_call import ImageEmbeds
from tests.test_ip_adapter import ARGS, diffusers_reference, ip_folder, sample_image  # noqa: F401

CPU = torch.device("cpu")


class _PerFrame:
    """What diffusers' UNetMotionModel repeats once per frame (`repeat_interleave`), here already one row per
    folded frame: the per-frame image tokens, handed to its IP-Adapter attention as they are."""

    def __init__(self, rows: torch.Tensor) -> None:
        self.rows = rows
        self.shape = rows.shape

    def repeat_interleave(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self.rows


def lerp_frames(own: dict[int, torch.Tensor], num_frames: int) -> torch.Tensor:
    """Linear interpolation between keyframes, the first before them and the last after (written out here)."""
    keys = sorted(own)
    rows = []
    for j in range(num_frames):
        before = max([k for k in keys if k <= j], default=keys[0])
        after = min([k for k in keys if k >= j], default=keys[-1])
        t = 0.0 if after == before else (j - before) / (after - before)
        rows.append((1 - t) * own[before] + t * own[after])
    return torch.stack(rows)


def test_keyframed_images_equal_diffusers_given_per_frame_image_tokens(ip_folder, one_thread):  # noqa: F811
    ours, folder = ip_folder
    reference = diffusers_reference(ours, folder, "ip.safetensors", 0.8)
    images = {1: sample_image(1), 4: sample_image(2, (30, 20))}
    own = {k: reference.encode_image(image, CPU, 1)[0] for k, image in images.items()}  # diffusers' encode_image
    cond = lerp_frames(own, 6)  # (6, 1, 16): one image's embedding per frame
    rows = torch.cat([torch.zeros_like(cond), cond])  # its negatives are zeros, as diffusers makes them
    projection = reference.unet.encoder_hid_proj
    project = projection.forward
    projection.forward = lambda _: [_PerFrame(project([rows])[0])]
    placeholder = [torch.zeros(2, 1, 16)]  # switches diffusers' IP-Adapter path on; the rows above replace it
    expected = reference(**ARGS, ip_adapter_image_embeds=placeholder, generator=torch.Generator().manual_seed(7),
                         output_type="np").frames  # fmt: skip
    got = ours(**ARGS, seed=7, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", images, 0.8))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    first = ours(**ARGS, seed=7, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", images[1], 0.8))
    assert np.abs(got - first).max() > 1e-2  # the second keyframe's image steers the later frames


def test_one_keyframe_is_the_plain_image_prompt_and_windows_take_their_frames(ip_folder, one_thread):  # noqa: F811
    ours, folder = ip_folder
    image = sample_image(3)
    plain = ours(**ARGS, seed=2, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", image))
    keyed = ours(**ARGS, seed=2, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", {"0": image}))
    np.testing.assert_allclose(keyed, plain, rtol=0, atol=1e-6)
    # A context window's rows are its own frames', for every video; the negatives are the same for all.
    cond, uncond = torch.arange(6.0).reshape(6, 1, 1), torch.full((1, 1, 1), -1.0)
    kwargs = ImageEmbeds([cond], [uncond]).unet_kwargs(torch.zeros(4, 4, 3, 2, 2), None, None, torch.tensor([2, 3, 4]))
    (rows,) = kwargs["added_cond_kwargs"]["image_embeds"]
    assert rows.flatten().tolist() == [-1.0] * 6 + [2.0, 3.0, 4.0] * 2


def test_keyframes_travel_with_the_prompts_interpolation_and_loop(ip_folder, one_thread, monkeypatch):  # noqa: F811
    """slerp and the keyframes going round reach the image embeddings as they reach the text."""
    from animatediff.pipeline import ip_call as module

    ours, folder = ip_folder
    seen = []
    interpolate = module.interpolate
    monkeypatch.setattr(module, "interpolate", lambda *a: seen.append(a[2:]) or interpolate(*a))
    images = {0: sample_image(1), 3: sample_image(2)}
    ours(**ARGS, seed=2, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", images),
         prompt_interpolation="slerp", prompt_travel_loop=True)  # fmt: skip
    assert seen == [("slerp", True)]


@pytest.mark.parametrize(
    "image, message",
    [
        ({}, "IP-Adapter keyframes: give at least one frame → image"),
        ({-1: "a.png"}, "IP-Adapter keyframes: frame -1 is not a non-negative integer"),
        ({0: "a.png", 4: ["b.png", "c.png"]}, "must each hold as many images"),
        ({0: 3}, "IP-Adapter image must be a file or PIL image, or a list of them, got 3"),
        ({0: ["a.png", 3]}, "IP-Adapter image 3: give a file path or a PIL image"),
    ],
)
def test_bad_keyframes_are_one_line(image, message):
    with pytest.raises(InputError, match=message):
        IPAdapter("ip.safetensors", image)


def test_a_keyframe_past_the_clip_is_one_line_before_loading(ip_folder):  # noqa: F811
    ours, folder = ip_folder
    with pytest.raises(InputError, match="IP-Adapter keyframe 6 is beyond the clip's last frame, 5"):
        ours(**ARGS, progress=False, ip_adapter=IPAdapter(folder / "missing.safetensors", {6: sample_image()}))


def test_a_run_entry_and_a_prompt_travel_ip_adapter_map_draw_the_held_keyframes(ip_folder, tmp_path, one_thread):  # noqa: F811
    """`ip_image` as a folder of images named by frame (prompt-travel's input_image_dir), each held for
    `ip_fixed_ratio` of its gap and, going round, the last towards the clip's end: the keyframes handed to the
    pipeline; and a prompt-travel document's ip_adapter_map reads as those keys."""
    import json

    from animatediff.entry_pipeline_args import entry_pipeline_args
    from animatediff.prompt_entries import load_prompt_config

    ours, folder = ip_folder
    images = tmp_path / "ip_images"
    images.mkdir()
    for frame, seed in ((0, 1), (4, 2), (9, 3)):
        sample_image(seed).save(images / f"{frame:04d}.png")
    (images / "notes.txt").write_text("not an image")
    document = {"motion_module": "mm.safetensors", "prompt_map": {"0": "a fox"}, "ip_adapter": str(folder /
                "ip.safetensors"), "ip_adapter_map": {"enable": True, "input_image_dir": str(images), "scale": 0.7,
                "is_plus": False, "save_input_image": True}}  # fmt: skip
    (tmp_path / "doc.json").write_text(json.dumps(document))
    (entry,), _ = load_prompt_config(tmp_path / "doc.json")
    assert (entry.ip_image, entry.ip_scale, entry.ip_fixed_ratio) == ([str(images)], 0.7, 0.5)
    call = entry_pipeline_args(entry, ours, 8, 16, 16, [])
    (ip_adapter,) = call["ip_adapter"]
    held = ip_adapter.keyframes
    paths = {frame: images / f"{frame:04d}.png" for frame in (0, 4)}
    # 0 held to 2, 4 held to 6, and the last going round: 8 frames, so frame 9's image is not read
    assert {k: [str(p) for p in v] for k, v in held.items()} == {0: [str(paths[0])], 2: [str(paths[0])],
                                                                 4: [str(paths[4])], 6: [str(paths[4])]}  # fmt: skip
    assert ip_adapter.scale == 0.7 and call["prompt_travel_loop"] is True


@pytest.mark.parametrize(
    "ip_image, message",
    [
        ({"x": "a.png"}, "ip_image: frame 'x' is not a non-negative integer"),
        ({0: []}, "ip_image at frame 0: give a path or a list of paths"),
    ],
)
def test_bad_ip_image_keyframes_in_an_entry_are_one_line(tmp_path, ip_image, message):
    import yaml

    from animatediff.prompt_entries import load_prompt_config

    entry = {"motion_module": "mm.safetensors", "prompt": ["a"], "ip_adapter": "ip.safetensors", "ip_image": ip_image}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump([entry]))
    with pytest.raises(InputError, match=re.escape(message)):
        load_prompt_config(tmp_path / "c.yaml")
