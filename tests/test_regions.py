"""Regional prompts (`pipeline/regions.py`): each region's text drawn where its mask is white, as
animatediff-cli-prompt-travel's `region_map` draws it."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from animatediff.errors import InputError, InputNotFound
from animatediff.pipeline.regions import Region, check_regions, region_masks, region_weights
from tests.diffusers_reference import diffusers_pipeline

BACKGROUND, LEFT, MOVING = "a red circle moving left", "a blue square moving up", {0: "a green cross", 3: "a red star"}


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size))
    mask[top : top + side, left : left + side] = 1.0
    return mask


def prompt_travel_mask(mask: np.ndarray, height: int, width: int, latent: tuple[int, int]) -> torch.Tensor:
    """prompt-travel's fitting, written out: grey image, Lanczos to the output size, ≥ 0.5 white, nearest down."""
    image = Image.fromarray(np.round(mask * 255).astype(np.uint8)).convert("RGB").resize((width, height), Image.LANCZOS)
    white = (np.asarray(image.convert("L"), np.float32) / 255 >= 0.5).astype(np.float32)
    return F.interpolate(torch.from_numpy(white)[None, None], size=latent, mode="nearest")[0, 0]


def test_masks_are_fitted_as_prompt_travel_fits_them_and_held_until_the_next():
    first, later = square(40, 4, 4, 20), square(40, 16, 20, 18)
    masks = region_masks([Region("x", {1: first, 3: later})], 5, 16, 24, (2, 3))
    assert masks.shape == (1, 5, 2, 3)
    assert not masks[0, 0].any()  # before the first mask: no region
    for frame, mask in ((1, first), (2, first), (3, later), (4, later)):
        assert torch.equal(masks[0, frame], prompt_travel_mask(mask, 16, 24, (2, 3)))


def test_a_mask_folder_is_read_by_frame_and_an_image_holds_for_every_frame(tmp_path):
    Image.fromarray(np.uint8(square(16, 0, 0, 8) * 255)).save(tmp_path / "0002.png")
    Image.fromarray(np.uint8(square(16, 8, 8, 8) * 255)).save(tmp_path / "5.png")
    (tmp_path / "notes.txt").write_text("not a mask")
    masks = region_masks([Region("x", tmp_path), Region("y", tmp_path / "0002.png")], 6, 16, 16, (2, 2))
    assert masks[0, :2].sum() == 0 and masks[0, 2:5].tolist() == [[[1, 0], [0, 0]]] * 3
    assert masks[0, 5].tolist() == [[0, 0], [0, 1]]
    assert masks[1].tolist() == [[[1, 0], [0, 0]]] * 6


def test_later_regions_are_painted_over_earlier_ones_and_the_weights_sum_to_one():
    a, b = square(4, 0, 0, 3), square(4, 2, 2, 2)
    weights = region_weights([Region("a", a), Region("b", b)], 2, 4, 4, (4, 4))
    assert weights.shape == (3, 2, 4, 4)
    assert torch.equal(weights.sum(0), torch.ones(2, 4, 4))
    assert weights[2, 0, 2, 2] == 1 and weights[1, 0, 2, 2] == 0  # the overlap is b's
    assert weights[1, 0, 0, 0] == 1 and weights[0, 0, 3, 0] == 1
    assert region_weights([], 2, 4, 4, (4, 4)) is None


@pytest.mark.parametrize(
    ("regions", "args", "message"),
    [
        ([Region("x", "missing.png")], {}, "region 0 mask: file not found"),
        ([Region(3, square(4, 0, 0, 2))], {}, "region 0: the prompt must be a string"),
        ([Region({"a": "x"}, square(4, 0, 0, 2))], {}, "region 0 prompt: frame 'a'"),
        ([Region("x", np.full((4, 4), 2.0))], {}, "values in [0, 1]"),
        ([Region("x", {9: square(4, 0, 0, 2)})], {}, "no mask at a frame below 8"),
        ([Region("x", square(4, 0, 0, 2))], {"videos": 2}, "one video per call"),
        ([Region("x", square(4, 0, 0, 2))], {"prompt_editing": True}, "without prompt editing"),
    ],
)
def test_bad_regions_are_one_line(regions, args, message):
    with pytest.raises((InputError, InputNotFound), match=message.replace("[", r"\[").replace("]", r"\]")):
        check_regions(regions, 8, **args)


@torch.no_grad()
def prompt_travel_regions(ref, texts, masks, latents, steps, scale):  # noqa: ANN001, ANN201
    """prompt-travel's region loop, written out over diffusers' own parts: every text's guided prediction on the
    whole frame, the scheduler stepping each text's latents, the latents pasted together by the masks in order (the
    background's mask all white), decoded by diffusers."""
    conds = [ref.encode_prompt(p, latents.device, 1, True, "blurry") for p in texts]
    ref.scheduler.set_timesteps(steps)
    x = latents
    for t in ref.scheduler.timesteps:
        pasted = torch.zeros_like(x)
        for (cond, uncond), mask in zip(conds, [torch.ones_like(masks[0]), *masks]):
            text = torch.cat([uncond, cond]).repeat_interleave(x.shape[2], dim=0)  # per frame, as diffusers' own
            eps_u, eps_c = ref.unet(torch.cat([x, x]), t, text).sample.chunk(2)
            stepped = ref.scheduler.step(eps_u + scale * (eps_c - eps_u), t, x).prev_sample
            pasted = pasted * (1 - mask) + stepped * mask
        x = pasted
    return ref.video_processor.postprocess_video(ref.decode_latents(x, 16), output_type="np")


def test_frames_equal_prompt_travels_pasted_regions_over_diffusers_parts(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    ref = diffusers_pipeline(pipe)
    frames, size = 4, 16
    latent = (size // pipe.vae_scale_factor,) * 2
    left = np.zeros((32, 32))
    left[:, :16] = 1  # the left half (of a 32 × 32 image)
    corner = {0: square(32, 16, 16, 16), 2: square(32, 0, 16, 16)}  # a quarter that moves up at frame 2
    regions = [Region(LEFT, left), Region(MOVING[0], corner)]
    masks = region_masks(regions, frames, size, size, latent)
    assert 0 < masks[0].mean() < 1 and not torch.equal(masks[1, 0], masks[1, 2])
    latents = torch.randn(1, 4, frames, *latent, generator=torch.Generator().manual_seed(3))
    args = dict(num_frames=frames, height=size, width=size, num_inference_steps=3, guidance_scale=7.5)
    got = pipe(BACKGROUND, negative_prompt="blurry", latents=latents, regions=regions, progress=False, **args)
    expected = prompt_travel_regions(ref, [BACKGROUND, LEFT, MOVING[0]], masks, latents, 3, 7.5)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    plain = pipe(BACKGROUND, negative_prompt="blurry", latents=latents, progress=False, **args)
    assert np.abs(got - plain).max() > 1e-2


def test_a_region_everywhere_is_its_prompt_and_nowhere_is_the_background(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    args = dict(num_frames=4, height=16, width=16, num_inference_steps=2, seed=1, progress=False)
    alone = pipe(LEFT, **args)
    assert np.array_equal(pipe(BACKGROUND, regions=[Region(LEFT, np.ones((8, 8)))], **args), alone)
    background = pipe(BACKGROUND, **args)
    assert np.array_equal(pipe(BACKGROUND, regions=[Region(LEFT, np.zeros((8, 8)))], **args), background)


def test_a_region_travels_under_windows_with_the_calls_travel(make_pipeline, one_thread):
    """A region's {frame: prompt} travels as the call's does; with context windows the regions' predictions are
    put together over the fused windows, which equals putting each window's together (both are per pixel)."""
    pipe = make_pipeline("v2")
    args = dict(num_frames=6, height=16, width=16, num_inference_steps=2, seed=2, progress=False)
    everywhere = [Region(MOVING, np.ones((8, 8)))]
    travel = pipe(MOVING, **args, context_length=4, context_overlap=2)
    got = pipe({0: BACKGROUND}, regions=everywhere, **args, context_length=4, context_overlap=2)
    np.testing.assert_allclose(got, travel, rtol=0, atol=1e-6)


def test_regions_keeping_the_video_are_the_video_mask_of_what_is_drawn(make_pipeline, one_thread):
    """A region with no prompt keeps the video where it is painted, and keep_background keeps it where no region is:
    the same frames as `video_mask` white on what is drawn (`tests/test_video_mask.py` holds that to diffusers)."""
    from tests.test_video_to_video import _video

    pipe = make_pipeline("v2")
    right = np.zeros((16, 16))
    right[:, 8:] = 1
    call = dict(video=_video(4), strength=0.8, num_frames=4, height=16, width=16, num_inference_steps=4, seed=5,
                progress=False)  # fmt: skip
    kept_right = pipe(BACKGROUND, regions=[Region(None, right)], **call)
    np.testing.assert_allclose(kept_right, pipe(BACKGROUND, video_mask=1 - right, **call), rtol=0, atol=1e-6)
    drawn_right = pipe(BACKGROUND, regions=[Region(LEFT, right)], keep_background=True, **call)
    np.testing.assert_allclose(drawn_right, pipe(LEFT, video_mask=right, **call), rtol=0, atol=1e-6)
    with pytest.raises(InputError, match="needs a video to keep"):
        pipe(BACKGROUND, regions=[Region(None, right)], num_frames=4, progress=False)
    with pytest.raises(InputError, match="draws nothing"):
        pipe(BACKGROUND, regions=[Region(None, right)], keep_background=True, **call)


def test_sdxl_regions_take_their_own_pooled_text(tmp_path, one_thread):
    """On SDXL each region's text brings its own pooled text: a region everywhere draws its prompt alone, half a
    frame draws something else."""
    from tests.sdxl_tiny import tiny_sdxl_pipeline

    pipe = tiny_sdxl_pipeline(tmp_path)
    args = dict(num_frames=2, height=32, width=32, num_inference_steps=2, guidance_scale=7.5, seed=1, progress=False)
    alone = pipe(LEFT, "blurry", **args)
    np.testing.assert_array_equal(pipe(BACKGROUND, "blurry", regions=[Region(LEFT, np.ones((4, 4)))], **args), alone)
    half = pipe(BACKGROUND, "blurry", regions=[Region(LEFT, square(4, 0, 0, 2))], **args)
    assert np.abs(half - alone).max() > 1e-3 and np.abs(half - pipe(BACKGROUND, "blurry", **args)).max() > 1e-3
