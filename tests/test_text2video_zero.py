import math
import sys

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, TextToVideoZeroPipeline
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from einops import rearrange, repeat

from animatediff.baselines import CrossFrameAttnProcessor, cross_frame_attention, direction_from_prompt, text2video_zero
from animatediff.baselines.text2video_zero import motion_steps, renoise, translate
from animatediff.models.attention import SharedContextCrossAttnProcessor
from animatediff.models.inflate import FrameContext

pytestmark = pytest.mark.usefixtures("one_thread")

# diffusers' Text2Video-Zero helpers live next to its (deprecated) pipeline class.
t2vz_reference = sys.modules[TextToVideoZeroPipeline.__module__]

PROMPT = "a red circle moving left"
# 10 steps: 901, 801, ..., 1, so the defaults give T = 901 and T' = 801, one step apart.
FAST = dict(num_frames=4, height=16, width=16, num_inference_steps=10)


def attention_layer() -> Attention:
    torch.manual_seed(0)
    return Attention(query_dim=32, heads=4, dim_head=8).eval()


def first_frame_attention(attn: Attention, hidden: torch.Tensor, f: int) -> torch.Tensor:
    """The cross-frame attention spelled out: frame k of clip v uses q(v, k) and k, v of frame (v, 0)."""
    clips = rearrange(hidden, "(b f) n c -> b f n c", f=f)
    out = torch.empty(*clips.shape[:3], attn.to_out[0].out_features)
    for v in range(clips.shape[0]):
        for k in range(f):
            q = attn.to_q(clips[v, k]).unflatten(-1, (attn.heads, -1)).transpose(0, 1)  # (heads, n, d)
            key = attn.to_k(clips[v, 0]).unflatten(-1, (attn.heads, -1)).transpose(0, 1)
            value = attn.to_v(clips[v, 0]).unflatten(-1, (attn.heads, -1)).transpose(0, 1)
            weights = (q @ key.transpose(1, 2) / math.sqrt(q.shape[-1])).softmax(-1)
            out[v, k] = attn.to_out[0]((weights @ value).transpose(0, 1).flatten(1))
    return rearrange(out, "b f n c -> (b f) n c")


def test_direction_from_prompt():
    assert direction_from_prompt("a red circle moving left on a blue background") == (-1.0, 0.0)
    assert direction_from_prompt("A square Moving  Right") == (1.0, 0.0)
    assert direction_from_prompt("a star moving up") == (0.0, -1.0)  # y points down in images
    assert direction_from_prompt("a star moving down, slowly") == (0.0, 1.0)
    assert direction_from_prompt("a circle moving left, then moving left again") == (-1.0, 0.0)
    assert direction_from_prompt("a circle moving left and a square moving right") is None
    assert direction_from_prompt("a green triangle growing") is None
    assert direction_from_prompt("a circle bouncing leftward") is None
    assert direction_from_prompt("") is None


@torch.no_grad()
def test_cross_frame_processor_attends_to_the_first_frame():
    attn = attention_layer()
    frames = FrameContext()
    attn.set_processor(CrossFrameAttnProcessor(frames))
    b, f = 2, 3
    hidden = torch.randn(b * f, 5, 32)
    frames.num_frames = f
    got = attn(hidden)
    torch.testing.assert_close(got, first_frame_attention(attn, hidden, f), rtol=1e-5, atol=1e-5)
    # diffusers' Text2Video-Zero processor; its batch_size counts clips.
    expected = t2vz_reference.CrossFrameAttnProcessor2_0(batch_size=b)(attn, hidden)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # The first frames see themselves: ordinary self-attention.
    plain = AttnProcessor2_0()(attn, hidden)
    torch.testing.assert_close(got[::f], plain[::f], rtol=1e-5, atol=1e-5)
    assert (got[1::f] - plain[1::f]).abs().max() > 1e-3
    # Cross-attention (a text context) and calls outside a clip are left alone.
    context = torch.randn(b * f, 7, 32)
    torch.testing.assert_close(attn(hidden, context), AttnProcessor2_0()(attn, hidden, context))
    frames.num_frames = None
    torch.testing.assert_close(attn(hidden), plain)


def test_cross_frame_attention_installs_on_spatial_self_attention_and_restores(make_pipeline):
    pipe = make_pipeline()
    before = dict(pipe.unet.unet.attn_processors)
    self_attention = [name for name in before if ".attn1." in name]
    assert self_attention and len(self_attention) * 2 == len(before)
    with cross_frame_attention(pipe.unet):
        inside = pipe.unet.unet.attn_processors
        for name, processor in inside.items():
            if name in self_attention:
                assert isinstance(processor, CrossFrameAttnProcessor) and processor.frames is pipe.unet.frames
            else:  # text cross-attention keeps the shared-context processor
                assert processor is before[name] and isinstance(processor, SharedContextCrossAttnProcessor)
    after = pipe.unet.unet.attn_processors
    assert all(after[name] is before[name] for name in before)

    with pytest.raises(RuntimeError, match="boom"), cross_frame_attention(pipe.unet):
        raise RuntimeError("boom")
    after = pipe.unet.unet.attn_processors
    assert all(after[name] is before[name] for name in before)


@torch.no_grad()
def test_cross_frame_unet_frames_follow_the_first_frame(make_pipeline):
    pipe = make_pipeline()
    pipe.unet.motion_enabled = False
    context = torch.randn(1, 77, 32)
    x = torch.randn(1, 4, 3, 8, 8)
    x[:, :, 2] = x[:, :, 0]
    with cross_frame_attention(pipe.unet):
        clip = pipe.unet(x, 500, context)
        other = x.clone()
        other[:, :, 1] = torch.randn(1, 4, 8, 8)
        changed = pipe.unet(other, 500, context)
    alone = pipe.unet(x[:, :, :1], 500, context)
    # The first frame only sees itself: an ordinary image-model prediction, whatever the other frames hold.
    torch.testing.assert_close(clip[:, :, 0], alone[:, :, 0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(changed[:, :, 0], clip[:, :, 0], rtol=1e-4, atol=1e-5)
    # A frame equal to the first frame attends to the same keys and values, so it gets the same prediction.
    torch.testing.assert_close(clip[:, :, 2], clip[:, :, 0], rtol=1e-4, atol=1e-5)
    # Without cross-frame attention, frame 1 attends to its own tokens and comes out differently.
    own = pipe.unet(x, 500, context)
    assert (own[:, :, 1] - clip[:, :, 1]).abs().max() > 1e-4


def test_translate_moves_whole_pixels_exactly():
    torch.manual_seed(0)
    latent = torch.randn(2, 4, 8, 8)
    f = 4
    # strength 1/8 of an 8-pixel side = one pixel per frame.
    right = translate(latent, f, (1.0, 0.0), 1 / 8)
    down = translate(latent, f, (0.0, 3.0), 1 / 8)  # the direction is normalised
    diagonal = translate(latent, f, (1.0, 1.0), math.sqrt(2) / 8)  # √2 px along the diagonal = (1, 1) px
    left_up = translate(latent, f, (-1.0, -1.0), math.sqrt(2) / 8)
    assert right.shape == (2, 4, f, 8, 8)
    for k in range(f):
        torch.testing.assert_close(right[:, :, k, :, k:], latent[:, :, :, : 8 - k])
        torch.testing.assert_close(down[:, :, k, k:, :], latent[:, :, : 8 - k, :])
        torch.testing.assert_close(diagonal[:, :, k, k:, k:], latent[:, :, : 8 - k, : 8 - k])
        torch.testing.assert_close(left_up[:, :, k, : 8 - k, : 8 - k], latent[:, :, k:, k:])
        # Border padding: what comes in from the left repeats the first column.
        torch.testing.assert_close(right[:, :, k, :, :k], latent[:, :, :, :1].expand(-1, -1, -1, k))
    # Non-square: the shorter side sets the scale, the same pixels for both axes.
    wide = torch.randn(1, 4, 8, 16)
    torch.testing.assert_close(translate(wide, 3, (1.0, 0.0), 1 / 8)[:, :, 2, :, 2:], wide[..., :14])
    # No translation: copies.
    for still in (translate(latent, f, None, 0.5), translate(latent, f, (1.0, 0.0), 0.0)):
        torch.testing.assert_close(still, repeat(latent, "b c h w -> b c f h w", f=f))
    with pytest.raises(ValueError, match="no direction"):
        translate(latent, f, (0.0, 0.0), 0.1)


@pytest.mark.filterwarnings("ignore::UserWarning")  # meshgrid and grid_sample defaults, inside diffusers
def test_translate_matches_diffusers_warp_with_the_opposite_sign():
    torch.manual_seed(0)
    latent = torch.randn(1, 4, 8, 8)
    # diffusers' flow is in pixels of a 512 grid; 64 of 512 is one pixel of 8, and it moves the content by −flow.
    expected = t2vz_reference.create_motion_field_and_warp_latents(64, 64, list(range(4)), latent.repeat(4, 1, 1, 1))
    ours = rearrange(translate(latent, 4, (-1.0, -1.0), math.sqrt(2) / 8), "1 c f h w -> f c h w")
    for k in range(1, 4):  # away from the borders, where diffusers reflects and we repeat
        torch.testing.assert_close(ours[k, :, : 8 - k, : 8 - k], expected[k, :, : 8 - k, : 8 - k])
    assert (ours[3] - expected[3]).abs().max() > 0.1  # ... and the borders do differ


def test_renoise_is_the_ddpm_forward_marginal():
    alphas_cumprod = DDIMScheduler(beta_schedule="scaled_linear").alphas_cumprod
    x, noise = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 4, 3, 8, 8)
    ratio = alphas_cumprod[941] / alphas_cumprod[881]
    torch.testing.assert_close(
        renoise(x, noise, alphas_cumprod, 881, 941), ratio.sqrt() * x + (1 - ratio).sqrt() * noise
    )
    torch.testing.assert_close(renoise(x, noise, alphas_cumprod, 500, 500), x)
    # A sample of the marginal at 881 (around a clean x₀ = 0) becomes a sample of the marginal at 941.
    torch.manual_seed(0)
    at_881 = (1 - alphas_cumprod[881]).sqrt() * torch.randn(200_000)
    at_941 = renoise(at_881, torch.randn(200_000), alphas_cumprod, 881, 941)
    assert at_941.std().item() == pytest.approx((1 - alphas_cumprod[941]).sqrt().item(), rel=1e-2)
    with pytest.raises(ValueError, match="up in time"):
        renoise(x, noise, alphas_cumprod, 941, 881)


def test_motion_steps_pick_the_papers_timesteps():
    scheduler = DDIMScheduler(steps_offset=1)
    scheduler.set_timesteps(50)
    i_t1, i_t0 = motion_steps(scheduler.timesteps, 881, 941)
    assert (scheduler.timesteps[i_t1].item(), scheduler.timesteps[i_t0].item()) == (941, 881)
    assert (i_t1, i_t0) == (50 - 47 - 1, 50 - 44 - 1)  # diffusers' t1=47, t0=44, counted from the end
    scheduler.set_timesteps(25)
    i_t1, i_t0 = motion_steps(scheduler.timesteps, 881, 941)
    assert (scheduler.timesteps[i_t1].item(), scheduler.timesteps[i_t0].item()) == (921, 881)
    with pytest.raises(ValueError, match="t0 ≤ t1"):
        motion_steps(scheduler.timesteps, 941, 881)
    with pytest.raises(ValueError, match="below the last"):
        motion_steps(scheduler.timesteps, 0, 941)


def test_identical_start_gives_identical_frames_with_the_motion_module_off(make_pipeline):
    pipe = make_pipeline()
    seen = []
    attn1 = pipe.unet.unet.mid_block.attentions[0].transformer_blocks[0].attn1
    pipe.unet.register_forward_pre_hook(lambda unet, args: seen.append((unet.motion_enabled, attn1.processor)))
    # t0 = t1: no steps between T' and T, so nothing is re-noised and every frame starts from the first frame's x_T.
    video = text2video_zero(pipe, PROMPT, **FAST, direction=None, t0=801, t1=801)
    assert seen and not any(enabled for enabled, _ in seen)
    assert all(isinstance(processor, CrossFrameAttnProcessor) for _, processor in seen)
    assert pipe.unet.motion_enabled and not isinstance(attn1.processor, CrossFrameAttnProcessor)
    np.testing.assert_allclose(video[:, 1:], np.broadcast_to(video[:, :1], video[:, 1:].shape), rtol=0, atol=1e-5)
    # The same start through the motion module gives frames that differ: the check above has teeth.
    latents = repeat(torch.randn(1, 4, 1, 8, 8), "b c 1 h w -> b c f h w", f=4)
    animated = pipe(PROMPT, num_frames=4, height=16, width=16, num_inference_steps=2, latents=latents, progress=False)
    assert np.abs(animated[:, 1:] - animated[:, :1]).max() > 1e-3


def test_first_frame_is_the_image_models_sample(make_pipeline):
    pipe = make_pipeline()
    video = text2video_zero(pipe, PROMPT, **FAST, seed=3)
    pipe.unet.motion_enabled = False
    image = pipe(PROMPT, num_frames=1, height=16, width=16, num_inference_steps=10, seed=3, progress=False)
    np.testing.assert_allclose(video[:, 0], image[:, 0], rtol=0, atol=1e-5)


def test_output_shape_range_seed_and_motion(make_pipeline):
    pipe = make_pipeline()
    prompts = [PROMPT, "a blue square moving up"]
    a = text2video_zero(pipe, prompts, negative_prompt="blurry", **FAST, seed=1)
    assert a.shape == (2, 4, 16, 16, 3) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, text2video_zero(pipe, prompts, negative_prompt="blurry", **FAST, seed=1))
    assert np.abs(a - text2video_zero(pipe, prompts, negative_prompt="blurry", **FAST, seed=2)).max() > 1e-3
    assert np.abs(a[:, 1:] - a[:, :1]).max() > 1e-3  # re-noised frames differ from the first
    # The translation changes the later frames but not the first. (The default 0.02 of an 8-pixel side rounds to
    # no shift at all for three frames; a quarter of the side per frame is two pixels.)
    moved = text2video_zero(pipe, prompts, negative_prompt="blurry", **FAST, seed=1, strength=0.25)
    still = text2video_zero(pipe, prompts, negative_prompt="blurry", **FAST, seed=1, direction=None)
    np.testing.assert_allclose(still[:, 0], moved[:, 0], rtol=0, atol=1e-6)
    assert np.abs(still[:, 1:] - moved[:, 1:]).max() > 1e-3
    # With the motion module off, its frame limit does not apply.
    long = text2video_zero(
        pipe, PROMPT, num_frames=pipe.unet.max_frames + 2, height=16, width=16, num_inference_steps=2
    )
    assert long.shape[1] == pipe.unet.max_frames + 2


def test_motion_switch_and_processors_restored_after_an_error(make_pipeline, monkeypatch):
    pipe = make_pipeline()
    before = dict(pipe.unet.unet.attn_processors)

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(pipe.unet.unet, "forward", boom)
    with pytest.raises(RuntimeError, match="boom"):
        text2video_zero(pipe, PROMPT, **FAST)
    assert pipe.unet.motion_enabled is True
    assert all(pipe.unet.unet.attn_processors[name] is p for name, p in before.items())
    pipe.unet.motion_enabled = False  # a switch that was off stays off
    with pytest.raises(RuntimeError, match="boom"):
        text2video_zero(pipe, PROMPT, **FAST)
    assert pipe.unet.motion_enabled is False


def test_invalid_arguments(make_pipeline):
    pipe = make_pipeline()
    with pytest.raises(ValueError, match="num_frames"):
        text2video_zero(pipe, PROMPT, **{**FAST, "num_frames": 0})
    with pytest.raises(ValueError, match="strength"):
        text2video_zero(pipe, PROMPT, **FAST, strength=-0.1)
    with pytest.raises(ValueError, match="multiple of"):
        text2video_zero(pipe, PROMPT, **{**FAST, "height": 10})
    with pytest.raises(ValueError, match="t0 ≤ t1"):
        text2video_zero(pipe, PROMPT, **FAST, t0=941, t1=881)


def exact_forward_loop(self, x_t0, t0, t1, generator):  # noqa: ANN001, ANN201
    """diffusers' forward_loop with ᾱ_t1/ᾱ_t0 in place of ∏ alphas[t0:t1], which is one index early."""
    eps = torch.randn(x_t0.shape, generator=generator, dtype=x_t0.dtype)
    ratio = self.scheduler.alphas_cumprod[t1] / self.scheduler.alphas_cumprod[t0]
    return ratio.sqrt() * x_t0 + (1 - ratio).sqrt() * eps


@pytest.mark.filterwarnings("ignore::UserWarning")  # meshgrid and grid_sample defaults, inside diffusers
def test_matches_diffusers_text_to_video_zero_without_translation(make_pipeline, monkeypatch):
    pipe = make_pipeline()
    monkeypatch.setattr(TextToVideoZeroPipeline, "forward_loop", exact_forward_loop)
    reference = TextToVideoZeroPipeline(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        unet=pipe.unet.unet,
        scheduler=DDIMScheduler.from_config(pipe.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    reference.set_progress_bar_config(disable=True)
    # 10 steps: 901, 801, ..., 1. diffusers counts T and T' from the end: t1=8 is 801, t0=6 is 601.
    latents = reference(
        PROMPT,
        video_length=4,
        height=16,
        width=16,
        num_inference_steps=10,
        t0=6,
        t1=8,
        motion_field_strength_x=0,
        motion_field_strength_y=0,
        generator=torch.Generator("cpu").manual_seed(5),
        output_type="latent",
    ).images
    expected = pipe.decode(rearrange(latents, "f c h w -> 1 c f h w"))
    got = text2video_zero(pipe, PROMPT, **FAST, seed=5, direction=None, t0=601, t1=801)
    assert np.abs(got[:, 1:] - got[:, :1]).max() > 1e-3
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
