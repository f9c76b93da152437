"""A region's own image prompt (`Region(ip_image=...)`, a run entry region's `ip_image`, prompt-travel's region
`ip_adapter_map`): prompt-travel's region loop over diffusers' parts with each text's own image embeddings, a region
everywhere as the call with its image, and bad input as one line."""

import json

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from animatediff.pipeline.ip_adapter import IPAdapter
from animatediff.pipeline.regions import Region, region_masks
from animatediff.prompt_entries import load_prompt_config
from tests.test_ip_adapter import diffusers_reference, ip_folder, sample_image  # noqa: F401
from tests.test_prompt_config import assets  # noqa: F401 - the fixture: a motion module, a LoRA, a MotionLoRA
from tests.test_prompt_travel_config import document

BACKGROUND, LEFT = "a red circle moving left", "a blue square"
ARGS = dict(num_frames=4, height=16, width=16, num_inference_steps=3, guidance_scale=7.5, progress=False)


@torch.no_grad()
def prompt_travel_regions_with_images(ref, texts, images, masks, latents, steps, scale):  # noqa: ANN001, ANN201
    """prompt-travel's region loop (tests/test_regions.py) over diffusers' parts, each text with the image embeddings
    diffusers' `prepare_ip_adapter_image_embeds` makes of its own image."""
    ref.scheduler.set_timesteps(steps)
    parts = []
    for prompt, image in zip(texts, images, strict=True):
        cond, uncond = ref.encode_prompt(prompt, latents.device, 1, True, "blurry")
        embeds = ref.prepare_ip_adapter_image_embeds(image, None, latents.device, 1, True)
        parts.append((torch.cat([uncond, cond]).repeat_interleave(latents.shape[2], dim=0), embeds))
    x = latents
    for t in ref.scheduler.timesteps:
        pasted = torch.zeros_like(x)
        for (text, embeds), mask in zip(parts, [torch.ones_like(masks[0]), *masks], strict=True):
            eps_u, eps_c = ref.unet(
                torch.cat([x, x]), t, text, added_cond_kwargs={"image_embeds": embeds}
            ).sample.chunk(2)
            stepped = ref.scheduler.step(eps_u + scale * (eps_c - eps_u), t, x).prev_sample
            pasted = pasted * (1 - mask) + stepped * mask
        x = pasted
    return ref.video_processor.postprocess_video(ref.decode_latents(x, 16), output_type="np")


def test_each_region_guides_with_its_own_images_as_prompt_travels_loop_over_diffusers_parts(ip_folder, one_thread):  # noqa: F811
    pipe, folder = ip_folder
    ref = diffusers_reference(pipe, folder, "ip.safetensors", 0.7)
    left = np.zeros((16, 16))
    left[:, :8] = 1
    regions = [Region(LEFT, left, ip_image=sample_image(1))]
    ip_adapter = IPAdapter(folder / "ip.safetensors", sample_image(0), 0.7)
    latents = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    got = pipe(BACKGROUND, "blurry", latents=latents, regions=regions, ip_adapter=ip_adapter, **ARGS)
    masks = region_masks(regions, 4, 16, 16, (8, 8))
    expected = prompt_travel_regions_with_images(
        ref, [BACKGROUND, LEFT], [sample_image(0), sample_image(1)], masks, latents, 3, 7.5
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    shared = pipe(BACKGROUND, "blurry", latents=latents, regions=[Region(LEFT, left)], ip_adapter=ip_adapter, **ARGS)
    assert np.abs(got - shared)[..., :8, :].max() > 1e-2  # the region's own image draws its half otherwise


def test_a_region_everywhere_with_its_images_is_the_call_with_them(ip_folder, one_thread):  # noqa: F811
    pipe, folder = ip_folder
    args = dict(ARGS, seed=2)
    own = IPAdapter(folder / "ip.safetensors", sample_image(1), 0.7)
    alone = pipe(LEFT, ip_adapter=own, **args)
    region = Region(LEFT, np.ones((8, 8)), ip_image=sample_image(1))
    call = IPAdapter(folder / "ip.safetensors", sample_image(0), 0.7)
    np.testing.assert_allclose(pipe(BACKGROUND, ip_adapter=call, regions=[region], **args), alone, atol=1e-6)


def test_bad_region_images_are_one_line(make_pipeline):
    pipe = make_pipeline("v2")
    with pytest.raises(InputError, match="region 0: its image prompt is drawn with the call's IP-Adapter; give one"):
        pipe(BACKGROUND, regions=[Region(LEFT, np.ones((8, 8)), ip_image=sample_image())], **ARGS)
    keep = Region(None, np.ones((8, 8)), ip_image=sample_image())
    with pytest.raises(InputError, match="a region keeping the video draws nothing to give an image prompt"):
        pipe(BACKGROUND, regions=[keep], video=np.zeros((4, 16, 16, 3)), **ARGS)


def test_prompt_travels_region_ip_adapter_map_is_the_items_ip_image(assets):  # noqa: F811
    (assets / "masks").mkdir()
    region = {"enable": True, "mask_dir": "masks", "condition": {"prompt_map": {"0": "a cat"}, "ip_adapter_map": {
        "enable": True, "input_image_dir": "faces", "prompt_fixed_ratio": 0.25, "save_input_image": True,
        "resized_to_square": False}}}  # fmt: skip
    config = assets / "prompt_travel.json"
    config.write_text(json.dumps(document(region_map={"0": region}, ip_adapter="ip.safetensors", ip_image="face.png")))
    (entry,), _ = load_prompt_config(config)
    assert entry.regions[0]["ip_image"] == ["faces"] and entry.regions[0]["ip_fixed_ratio"] == 0.25
    region["condition"]["ip_adapter_map"]["enable"] = False
    config.write_text(json.dumps(document(region_map={"0": region})))
    (entry,), _ = load_prompt_config(config)
    assert "ip_image" not in entry.regions[0]
    region["condition"]["ip_adapter_map"] |= {"enable": True, "resized_to_square": True}
    config.write_text(json.dumps(document(region_map={"0": region}, ip_adapter="ip.safetensors", ip_image="face.png")))
    with pytest.raises(InputError, match="resized_to_square is not read here"):
        load_prompt_config(config)


def test_a_run_entrys_region_ip_image_is_held_as_the_entrys_keyframes(tmp_path):
    from animatediff.region_entries import entry_regions

    (tmp_path / "faces").mkdir()
    for frame in (0, 8):
        sample_image(frame).save(tmp_path / "faces" / f"{frame:04d}.png")
    sample_image(3).save(tmp_path / "face.png")
    np_mask = (np.ones((16, 16, 3)) * 255).astype(np.uint8)
    from PIL import Image

    Image.fromarray(np_mask).save(tmp_path / "mask.png")
    item = {"mask": "mask.png", "prompt": "a cat", "ip_image": "faces", "ip_fixed_ratio": 0.5}
    entry = {"motion_module": "mm.safetensors", "prompt": ["a"], "ip_adapter": "ip.safetensors", "ip_image": "face.png",
             "regions": [item, {"mask": "mask.png", "prompt": "a dog"}]}  # fmt: skip
    (tmp_path / "c.json").write_text(json.dumps([entry]))
    (parsed,), _ = load_prompt_config(tmp_path / "c.json")
    own, plain = entry_regions(parsed, 16, lambda p: str(tmp_path / p))
    faces = tmp_path / "faces"
    assert own.ip_image == {0: [str(faces / "0000.png")], 4: [str(faces / "0000.png")], 8: [str(faces / "0008.png")]}
    assert plain.ip_image is None
    (tmp_path / "c.json").write_text(json.dumps([{**entry, "ip_adapter": ""}]))
    with pytest.raises(InputError, match=r"regions\[0\]: ip_image is drawn with the entry's IP-Adapter"):
        load_prompt_config(tmp_path / "c.json")
