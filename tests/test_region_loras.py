"""A merged LoRA confined to regions, its scale keyframed by frame (`region_loras=[RegionLora(...)]`, a run entry's
`lora_configs` item with `regions` and `scale`, prompt-travel's `lora_map` with a `{region, scale}` value):
prompt-travel's region loop written out over diffusers' parts with the LoRA loaded by diffusers' own loader and its
adapter switched per region, the schedule prompt-travel eases, a scale per context window, and bad input."""

import json

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from animatediff.pipeline.lora_ramp import LoraRamp
from animatediff.pipeline.region_loras import RegionLora
from animatediff.pipeline.regions import Region, region_masks
from animatediff.prompt_entries import load_prompt_config
from tests.diffusers_reference import diffusers_pipeline
from tests.test_lora_ramp import peft_lora
from tests.test_prompt_config import assets  # noqa: F401 - the fixture: a motion module, a LoRA, a MotionLoRA
from tests.test_prompt_travel_config import document
from tests.tiny import tiny_motion

BACKGROUND, LEFT = "a red circle moving left", "a blue square moving up"
ARGS = dict(num_frames=4, height=16, width=16, num_inference_steps=3, guidance_scale=7.5, progress=False)


def left_half() -> np.ndarray:
    mask = np.zeros((16, 16))
    mask[:, :8] = 1
    return mask


@torch.no_grad()
def prompt_travel_region_lora(ref, texts, masks, latents, scales):  # noqa: ANN001, ANN201
    """prompt-travel's region loop (every text's guided prediction on the whole frame, each stepped, pasted by the
    masks in order) with a region LoRA: before each text's prediction its adapter is set to that text's scale in
    `scales` (0: off). Blended at every step."""
    conds = [ref.encode_prompt(p, latents.device, 1, True, "blurry") for p in texts]
    ref.scheduler.set_timesteps(ARGS["num_inference_steps"])
    x = latents
    for t in ref.scheduler.timesteps:
        pasted = torch.zeros_like(x)
        for (cond, uncond), mask, scale in zip(conds, [torch.ones_like(masks[0]), *masks], scales, strict=True):
            ref.set_adapters(["region"], [scale])
            text = torch.cat([uncond, cond]).repeat_interleave(x.shape[2], dim=0)
            eps_u, eps_c = ref.unet(torch.cat([x, x]), t, text).sample.chunk(2)
            stepped = ref.scheduler.step(eps_u + ARGS["guidance_scale"] * (eps_c - eps_u), t, x).prev_sample
            pasted = pasted * (1 - mask) + stepped * mask
        x = pasted
    return ref.video_processor.postprocess_video(ref.decode_latents(x, 16), output_type="np")


def test_frames_equal_prompt_travels_region_loop_with_the_lora_in_one_region(make_pipeline, one_thread, tmp_path):
    pytest.importorskip("peft")
    pipe = make_pipeline("v2")
    ref = diffusers_pipeline(pipe)  # the weights before ours merge the LoRA
    sd = peft_lora(tmp_path / "region.safetensors")
    name = pipe.add_lora(tmp_path / "region.safetensors", 0.75)
    regions = [Region(LEFT, left_half())]
    masks = region_masks(regions, 4, 16, 16, (8, 8))
    latents = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    lora = RegionLora(name, [0], {0: 1.0, 3: 0.2})  # eased 1 → 0.2 over frames 0–3: 0.644… at the middle frame, 2
    got = pipe(BACKGROUND, "blurry", latents=latents, regions=regions, region_loras=[lora], **ARGS)
    assert pipe.loras.active[name] == 0.75  # put back
    ref.load_lora_weights({k: v.clone() for k, v in sd.items()}, adapter_name="region")
    middle = 1.0 + (2 / 3) ** 2 * (0.2 - 1.0)
    expected = prompt_travel_region_lora(ref, [BACKGROUND, LEFT], masks, latents, [0.0, middle])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    background = pipe(BACKGROUND, "blurry", latents=latents, regions=regions,
                      region_loras=[RegionLora(name, ["background"], {0: 1.0, 3: 0.2})], **ARGS)  # fmt: skip
    expected = prompt_travel_region_lora(ref, [BACKGROUND, LEFT], masks, latents, [middle, 0.0])
    np.testing.assert_allclose(background, expected, rtol=0, atol=1e-4)
    assert np.abs(got - background).max() > 1e-3


def test_the_schedule_eases_between_keyframes_and_goes_round():
    def eased(a: float, b: float, rate: float) -> float:
        return a + rate * rate * (b - a)

    assert RegionLora("x", scale=0.5).frame_scales(3) == [0.5, 0.5, 0.5]
    assert RegionLora("x", scale={2: 0.7}).frame_scales(4) == [0.7] * 4  # one keyframe: everywhere
    scales = RegionLora("x", scale={4: 0.5, 12: 1.0}).frame_scales(16)
    assert scales[4:12] == pytest.approx([eased(0.5, 1.0, d / 8) for d in range(8)])
    # From the last keyframe round to the first, past the clip's end: frames 12–15, then 0–3.
    assert scales[12:] + scales[:4] == pytest.approx([eased(1.0, 0.5, d / 8) for d in range(8)])


def test_each_context_window_takes_the_scale_at_its_middle_frame(make_pipeline, tmp_path):
    pipe = make_pipeline("v2")
    peft_lora(tmp_path / "region.safetensors")
    name = pipe.add_lora(tmp_path / "region.safetensors", 0.75)
    set_to = []
    merged_set_scale = pipe.loras.set_scale
    pipe.loras.set_scale = lambda lora, scale: (set_to.append(scale), merged_set_scale(lora, scale))
    lora = RegionLora(name, scale={0: 0.0, 7: 1.0})
    args = {**ARGS, "num_frames": 8, "num_inference_steps": 1}
    pipe(BACKGROUND, context_length=4, context_overlap=2, region_loras=[lora], **args)
    schedule = lora.frame_scales(8)
    windows = [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]  # uniform windows of 4, overlap 2, in one step
    assert set_to[:-1] == pytest.approx([schedule[w[2]] for w in windows])
    assert set_to[-1] == 0.75 and pipe.loras.active[name] == 0.75  # put back


def test_bad_region_loras_are_one_line(make_pipeline, tmp_path):
    pipe = make_pipeline("v2")
    peft_lora(tmp_path / "region.safetensors")
    name = pipe.add_lora(tmp_path / "region.safetensors", 0.75)
    regions = [Region(LEFT, left_half())]
    for kwargs, message in (
        ({"region_loras": [RegionLora("image:x")]}, r"no LoRA named 'image:x' is merged"),
        ({"region_loras": [RegionLora(name, [0])]}, "region LoRA 1 acts in regions \\[0\\], but the call draws no"),
        ({"region_loras": [RegionLora(name, [1])], "regions": regions}, "region 1 is not one of the call's 1"),
        ({"region_loras": [RegionLora(name, scale={9: 1.0})]}, "keyframe 9 is past the clip's 4 frames"),
        ({"region_loras": [RegionLora(name)], "lora_ramps": [LoraRamp(name)]}, "both ramped over the steps and"),
    ):
        with pytest.raises(InputError, match=message):
            pipe(BACKGROUND, **ARGS, **kwargs)
    for regions, scale, message in (
        ("0", 1.0, "LoRA regions must be a list"),
        ([0], {"0": 1.0}, "keyframe '0' is not a frame index"),
        ([0], {0: "high"}, "the scale at frame 0 must be a number"),
        ([0], {}, "give a scale"),
    ):
        with pytest.raises(InputError, match=message):
            RegionLora(name, regions, scale)
    pytest.importorskip("accelerate")
    pipe.enable_sequential_cpu_offload("cpu")  # the weights the scales are merged into are out of place
    for kwargs in ({"region_loras": [RegionLora(name)]}, {"lora_ramps": [LoraRamp(name)]}):
        with pytest.raises(InputError, match="sequential offload keeps out of place: use model offload"):
            pipe(BACKGROUND, **ARGS, **kwargs)


def test_prompt_travels_region_lora_map_is_an_entrys_region_lora(assets):  # noqa: F811
    region = {"enable": True, "mask_dir": "masks", "condition": {"prompt_map": {"0": "a boat"}}}
    region_map = {"background": {"is_init_img": False}, "3": region, "1": {"enable": False}, "7": region}
    lora_map = {"style.safetensors": 0.7, "hero.safetensors": {"region": ["7", "background"], "scale": {"0": 0.5}}}
    config = assets / "prompt_travel.json"
    config.write_text(json.dumps(document(region_map=region_map, lora_map=lora_map)))
    (entry,), _ = load_prompt_config(config)
    hero = {"path": "hero.safetensors", "alpha": 0.75, "regions": [1, "background"], "scale": {0: 0.5}}
    assert entry.lora_configs == [{"path": "style.safetensors", "alpha": 0.7}, hero]
    from animatediff.pipeline.region_loras import entry_region_loras

    loras = entry_region_loras(entry.lora_configs, lambda p: f"/m/{p}")
    assert loras == [RegionLora("image:/m/hero.safetensors", (1, "background"), {0: 0.5})]
    for value, message in (
        ({"region": ["1"], "scale": 1.0}, "region '1' is not one of the region_map's regions switched on"),
        ({"region": [], "scale": 1.0}, "a {region, scale} value needs region"),
    ):
        config.write_text(json.dumps(document(region_map=region_map, lora_map={"hero.safetensors": value})))
        with pytest.raises(InputError, match=message):
            load_prompt_config(config)
    own = [{"path": "a.safetensors", "regions": [0], "scale": {"x": 1.0}}]
    config.write_text(json.dumps([{"motion_module": "mm.safetensors", "prompt": ["a"], "lora_configs": own}]))
    with pytest.raises(InputError, match=r"lora_configs scale: frame 'x' is not a non-negative integer"):
        load_prompt_config(config)
    own[0]["scale"], own[0]["ramp"] = 1.0, {"start_scale": 0.2}
    config.write_text(json.dumps([{"motion_module": "mm.safetensors", "prompt": ["a"], "lora_configs": own}]))
    with pytest.raises(InputError, match="ramped over the steps or set per region, not both"):
        load_prompt_config(config)


def test_generate_region_lora_draws_what_the_library_draws(tmp_path, base_folder, one_thread):
    from animatediff.formats import save_motion_modules
    from animatediff.pipeline import AnimationPipeline
    from tests.cli_helpers import generate
    from tests.test_regions_cli import mask_image

    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    left = mask_image(tmp_path / "left.png", True)
    lora = tmp_path / "region.safetensors"
    peft_lora(lora)
    extra = ["--region", f"{left}:a red cat", "--region-lora", f"0:{lora}:0.8", "--guidance-scale", "7.5"]
    assert generate(base_folder, motion, tmp_path / "o.npy", *extra) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    name = pipe.add_lora(lora, 0.8)
    call = dict(num_frames=4, num_inference_steps=4, guidance_scale=7.5, progress=False, seed=3)
    regions = [Region("a red cat", str(left))]
    expected = pipe("a fox", "", regions=regions, region_loras=[RegionLora(name, [0], 0.8)], **call)[0]
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected)
    assert np.abs(expected - pipe("a fox", "", regions=regions, **call)[0]).max() > 1e-3  # merged everywhere
    # Keyframed by frame: merged at 1 (the text-encoder part reading the prompts at 1), eased between the frames.
    extra[3] = f"0,background:{lora}:0=0.2,3=1"
    assert generate(base_folder, motion, tmp_path / "k.npy", *extra) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    name = pipe.add_lora(lora, 1.0)
    keyed = RegionLora(name, [0, "background"], {0: 0.2, 3: 1.0})
    expected = pipe("a fox", "", regions=regions, region_loras=[keyed], **call)[0]
    np.testing.assert_array_equal(np.load(tmp_path / "k.npy"), expected)


def test_bad_region_lora_flags_are_one_line(tmp_path, capsys, monkeypatch):
    from tests.cli_helpers import generate_error
    from tests.test_regions_cli import mask_image

    mask = mask_image(tmp_path / "m.png", True)
    for extra, message in (
        (["--region-lora", "0:a.safetensors"], "--region-lora acts in the --region items: give --region too"),
        (["--region", f"{mask}:a cat", "--region-lora", "style.safetensors"], "give REGIONS:PATH[:SCALE]"),
        (["--region", f"{mask}:a cat", "--region-lora", "1:a.safetensors"], "region 1 is not one of the 1"),
        (["--region", f"{mask}:a cat", "--region-lora", "0:a.safetensors:0=1,x=2"], "keyframes are FRAME=SCALE"),
        (["--region", f"{mask}:a cat", "--region-lora", "0:a.safetensors:0=1,9=2"], "keyframe 9 is past the clip's 4"),
    ):  # fmt: skip
        assert message in generate_error(tmp_path, capsys, monkeypatch, *extra)
