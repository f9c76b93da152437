"""A ControlNet confined to regions (`ControlNet.regions`, `KeyframeControlNet.regions`): prompt-travel's
`control_region_list`, its region loop with per-region residuals written out over diffusers' parts, the entry keys
it becomes, and bad input."""

import json

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from animatediff.pipeline.controlnet import ControlNet
from animatediff.pipeline.keyframe_controlnet import KeyframeControlNet
from animatediff.pipeline.regions import Region, region_masks
from animatediff.prompt_config import load_prompt_config
from tests.controlnet_helpers import tiny_controlnet
from tests.diffusers_reference import diffusers_pipeline
from tests.test_prompt_config import assets  # noqa: F401 - the fixture: a motion module, a LoRA, a MotionLoRA
from tests.test_prompt_travel_config import ON, document

BACKGROUND, LEFT = "a red circle moving left", "a blue square moving up"
ARGS = dict(num_frames=4, height=16, width=16, num_inference_steps=3, guidance_scale=7.5, progress=False)


@torch.no_grad()
def prompt_travel_control_regions(ref, texts, masks, latents, control):  # noqa: ANN001, ANN201
    """prompt-travel's region loop (every text's guided prediction on the whole frame, each stepped, pasted by the
    masks in order) with a ControlNet whose `control_region_list` names the texts in `acting` (0: the background):
    their unconditional and conditional rows get its residuals, the others none. Blended at every step."""
    model, images, scale, acting = control
    conds = [ref.encode_prompt(p, latents.device, 1, True, "blurry") for p in texts]
    ref.scheduler.set_timesteps(ARGS["num_inference_steps"])
    x = latents
    for t in ref.scheduler.timesteps:
        pasted = torch.zeros_like(x)
        for k, ((cond, uncond), mask) in enumerate(zip(conds, [torch.ones_like(masks[0]), *masks])):
            text = torch.cat([uncond, cond]).repeat_interleave(x.shape[2], dim=0)
            sample, residuals = torch.cat([x, x]), {}
            if k in acting:
                frames = sample.permute(0, 2, 1, 3, 4).flatten(0, 1)
                down, mid = model(frames, t, encoder_hidden_states=text, controlnet_cond=torch.cat([images, images]),
                                  conditioning_scale=scale, return_dict=False)  # fmt: skip
                residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            eps_u, eps_c = ref.unet(sample, t, text, **residuals).sample.chunk(2)
            stepped = ref.scheduler.step(eps_u + ARGS["guidance_scale"] * (eps_c - eps_u), t, x).prev_sample
            pasted = pasted * (1 - mask) + stepped * mask
        x = pasted
    return ref.video_processor.postprocess_video(ref.decode_latents(x, 16), output_type="np")


@pytest.mark.parametrize("names, acting", [([0], {1}), (["background"], {0})])
def test_frames_equal_prompt_travels_regions_with_a_confined_controlnet(make_pipeline, one_thread, names, acting):
    pipe = make_pipeline("v2")
    ref = diffusers_pipeline(pipe)
    model = tiny_controlnet(pipe.unet.unet)
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    left = np.zeros((16, 16))
    left[:, :8] = 1
    regions = [Region(LEFT, left)]
    masks = region_masks(regions, 4, 16, 16, (8, 8))
    latents = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    confined = [ControlNet(model, images, scale=0.8, regions=names)]
    got = pipe(BACKGROUND, negative_prompt="blurry", latents=latents, regions=regions, controlnets=confined, **ARGS)
    expected = prompt_travel_control_regions(ref, [BACKGROUND, LEFT], masks, latents, (model, images, 0.8, acting))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    everywhere = [ControlNet(model, images, scale=0.8)]
    for other in (everywhere, []):
        drawn = pipe(BACKGROUND, negative_prompt="blurry", latents=latents, regions=regions, controlnets=other, **ARGS)
        assert np.abs(got - drawn).max() > 1e-2
    keyframed = [KeyframeControlNet(model, {0: images[0]}, scale=0.8, regions=names)]
    steered = pipe(BACKGROUND, latents=latents, regions=regions, controlnets=keyframed, **ARGS)
    unsteered = pipe(BACKGROUND, latents=latents, regions=regions, **ARGS)
    assert np.abs(steered - unsteered).max() > 1e-3


def test_bad_regions_are_one_line(make_pipeline):
    pipe = make_pipeline("v2")
    model = tiny_controlnet(pipe.unet.unet)
    images = torch.rand(4, 3, 16, 16)
    for regions, message in (("0", "must be a list"), ([-1], "region -1: give a region's index"), (["bg"], "'bg'")):
        with pytest.raises(InputError, match=message):
            ControlNet(model, images, regions=regions)
    confined = [ControlNet(model, images, regions=[1])]
    with pytest.raises(InputError, match="the call draws no regional prompts"):
        pipe(BACKGROUND, controlnets=confined, **ARGS)
    with pytest.raises(InputError, match="region 1 is not one of the call's 1 regions"):
        pipe(BACKGROUND, regions=[Region(LEFT, np.ones((8, 8)))], controlnets=confined, **ARGS)


def test_prompt_travels_control_region_list_names_the_entrys_regions(assets):  # noqa: F811
    region = {"enable": True, "mask_dir": "masks", "condition": {"prompt_map": {"0": "a boat"}}}
    region_map = {"background": {"is_init_img": False}, "3": region, "1": {"enable": False}, "7": region}
    canny = {**ON, "control_region_list": ["7", "background"]}
    controls = {"input_image_dir": "c", "controlnet_canny": canny}
    config = assets / "prompt_travel.json"
    config.write_text(json.dumps(document(region_map=region_map, controlnet_map=controls)))
    (entry,), _ = load_prompt_config(config)
    assert len(entry.regions) == 2 and entry.keyframe_controlnets[0]["regions"] == [1, "background"]
    own = [{"mask": "cat.png", "prompt": "a cat"}]  # the entry's own regions come before the region_map's
    config.write_text(json.dumps(document(regions=own, region_map=region_map, controlnet_map=controls)))
    (entry,), _ = load_prompt_config(config)
    assert len(entry.regions) == 3 and entry.keyframe_controlnets[0]["regions"] == [2, "background"]
    config.write_text(json.dumps(document(region_map=region_map, controlnet_map={**controls, "controlnet_canny": {
        **canny, "control_region_list": ["1"]}})))  # fmt: skip
    with pytest.raises(ValueError, match=r"control_region_list \['1'\]: name the region_map's regions switched on"):
        load_prompt_config(config)
