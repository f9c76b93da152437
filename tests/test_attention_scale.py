"""The motion attention scale (`models/attention_scale.py`, ComfyUI-AnimateDiff-Evolved's motion "scale"): the
temporal attention's keys multiplied by a number, or by a map per pixel and frame; against diffusers'
AnimateDiffPipeline with its motion attention processors scaling the keys so, through the CLI and a run entry, and
bad input."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from PIL import Image

from animatediff.errors import InputError
from animatediff.pipeline.attention_scale import attention_map
from tests.diffusers_reference import diffusers_pipeline

ARGS = dict(prompt="a red circle moving left", negative_prompt="blurry", num_frames=6, height=16, width=16,
            num_inference_steps=3, guidance_scale=7.5)  # fmt: skip


class KeyScaled(AttnProcessor2_0):
    """diffusers' motion attention with its keys multiplied by `scale`: a number, or a map (f, h, w) taken to the
    module's size (bilinear), as Evolved's scale multival scales them."""

    def __init__(self, scale: float | torch.Tensor) -> None:
        self.scale, self.shape = scale, None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):  # noqa: ANN001, ANN003, ANN204
        n, f, _ = hidden_states.shape
        q, k, v = (
            p(hidden_states).view(n, f, attn.heads, -1).transpose(1, 2) for p in (attn.to_q, attn.to_k, attn.to_v)
        )
        if isinstance(self.scale, torch.Tensor):
            videos, h, w = self.shape
            sized = F.interpolate(self.scale[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            k = k * sized.permute(1, 2, 0).reshape(h * w, f).repeat(videos, 1)[:, None, :, None]
        else:
            k = k * self.scale
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, f, -1)
        return attn.to_out[1](attn.to_out[0](out))


def key_scaled_reference(pipe, scale):  # noqa: ANN001, ANN201
    reference = diffusers_pipeline(pipe)
    for module in [m for m in reference.unet.modules() if isinstance(m, AnimateDiffTransformer3D)]:
        processor = KeyScaled(scale)
        for block in module.transformer_blocks:
            block.attn1.set_processor(processor)
            block.attn2.set_processor(processor)

        def shape(_module, args, processor=processor):  # noqa: ANN001, ANN202 - frames folded: ((b f), c, h, w)
            processor.shape = (args[0].shape[0] // ARGS["num_frames"], *args[0].shape[2:])

        module.register_forward_pre_hook(shape)
    return reference


@pytest.mark.parametrize("scale", [1.6, 0.4, "map"])
def test_frames_equal_diffusers_with_its_motion_keys_scaled(make_pipeline, one_thread, scale):
    pipe = make_pipeline("v2")
    latents = torch.randn(1, 4, 6, 8, 8, generator=torch.Generator().manual_seed(4))
    mask = None
    if scale == "map":  # a map over frames and the 8 × 8 latent pixels: 1.5 on the left half, 0.3 on the right
        mask = np.full((6, 8, 8), 0.2, np.float32)
        mask[:, :, :4] = 1.0
        mask[3:, :4] = 0.5  # the top half of the left from frame 3 on
        scale = 1.5
        expected_scale = torch.from_numpy(mask) * 1.5
    else:
        expected_scale = scale
    got = pipe(**ARGS, latents=latents, progress=False, motion_attention_scale=scale, motion_attention_mask=mask)
    expected = key_scaled_reference(pipe, expected_scale)(**ARGS, latents=latents, output_type="np").frames
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    plain = pipe(**ARGS, latents=latents, progress=False)
    assert np.abs(got - plain).max() > 1e-3
    assert all(t.attention_scale == 1.0 for t in _transformers(pipe))  # put back after the call


def test_keyframes_by_step_equal_diffusers_switching_its_key_scale_at_that_step(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    latents = torch.randn(1, 4, 6, 8, 8, generator=torch.Generator().manual_seed(5))
    args = dict(ARGS, num_inference_steps=4)
    got = pipe(**args, latents=latents, progress=False, motion_attention_scale=1.6,
               motion_attention_scale_steps={0.5: 0.4})  # fmt: skip
    reference = key_scaled_reference(pipe, 1.6)
    processors = [p for p in reference.unet.attn_processors.values() if isinstance(p, KeyScaled)]

    def switch(_pipe, i, _t, kwargs):  # noqa: ANN001, ANN202 - after step 1 of 4: from half the steps on, 0.4
        for processor in processors if i == 1 else []:
            processor.scale = 0.4
        return kwargs

    expected = reference(**args, latents=latents, output_type="np", callback_on_step_end=switch).frames
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    constant = pipe(**args, latents=latents, progress=False, motion_attention_scale=1.6)
    assert np.abs(got - constant).max() > 1e-4
    at_start = pipe(**args, latents=latents, progress=False, motion_attention_scale=1.6,
                    motion_attention_scale_steps={0.0: 0.4})  # fmt: skip
    np.testing.assert_array_equal(at_start, pipe(**args, latents=latents, progress=False, motion_attention_scale=0.4))


class WindowKeyScaled(KeyScaled):
    """`KeyScaled` in diffusers' FreeNoise blocks, which call each attention once per window in order: the k-th call
    of a UNet pass takes window k's frames of the map."""

    def __init__(self, scale: torch.Tensor, windows: list[tuple[int, int]]) -> None:
        super().__init__(scale)
        self.windows, self.calls = windows, 0

    def __call__(self, attn, hidden_states, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN204
        start, end = self.windows[self.calls % len(self.windows)]
        self.calls += 1
        full, self.scale = self.scale, self.scale[start:end]
        try:
            return super().__call__(attn, hidden_states, *args, **kw)
        finally:
            self.scale = full


def test_a_map_under_free_noise_equals_diffusers_free_noise_scaling_each_windows_keys_by_its_frames(
    make_pipeline, one_thread
):
    from animatediff.models.free_noise import window_spans
    from animatediff.pipeline.free_noise import FreeNoise

    pipe = make_pipeline("v2")
    free_noise = FreeNoise(8, 4, "pyramid", "shuffle_context")
    args = dict(ARGS, num_frames=20)  # windows (0, 8), (4, 12), (8, 16), (12, 20)
    mask = np.full((20, 8, 8), 0.2, np.float32)
    mask[:, :, :4] = 1.0
    mask[10:, :4] = 0.5  # the top half of the left from frame 10 on: windows see different maps
    got = pipe(**args, seed=7, progress=False, free_noise=free_noise, motion_attention_scale=1.5,
               motion_attention_mask=mask)  # fmt: skip

    reference = diffusers_pipeline(pipe, motion_adapter=True)
    reference.enable_free_noise(8, 4, "pyramid", "shuffle_context")
    windows = window_spans(20, 8, 4)
    for module in [m for m in reference.unet.modules() if isinstance(m, AnimateDiffTransformer3D)]:
        processors = []
        for block in module.transformer_blocks:
            for attention in (block.attn1, block.attn2):
                processors.append(WindowKeyScaled(torch.from_numpy(mask) * 1.5, windows))
                attention.set_processor(processors[-1])

        def shape(_module, args, processors=processors):  # noqa: ANN001, ANN202
            for processor in processors:
                processor.shape = (args[0].shape[0] // 20, *args[0].shape[2:])

        module.register_forward_pre_hook(shape)
    generator = torch.Generator().manual_seed(7)
    expected = reference(**args, generator=generator, output_type="np").frames
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    uniform = pipe(**args, seed=7, progress=False, free_noise=free_noise, motion_attention_scale=1.5)
    assert np.abs(got - uniform).max() > 1e-3


def _transformers(pipe):  # noqa: ANN001, ANN202
    return [m.temporal_transformer for m in pipe.unet.motion_modules.modules() if hasattr(m, "temporal_transformer")]


def test_one_is_as_trained_bit_for_bit_and_windows_take_their_frames_of_the_map(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    args = dict(ARGS, seed=2, progress=False)
    plain = pipe(**args)
    np.testing.assert_array_equal(pipe(**args, motion_attention_scale=1.0), plain)
    white = np.ones((8, 8), np.float32)
    np.testing.assert_allclose(pipe(**args, motion_attention_mask=white), plain, rtol=0, atol=1e-6)
    # Context windows: each window's prediction takes its own frames of the map.
    windows = dict(args, num_frames=8, context_length=4, context_overlap=2)
    keyed = {0: white, 4: np.zeros((8, 8), np.float32)}
    got = pipe(**windows, motion_attention_mask=keyed)
    first = pipe(**windows)
    assert np.abs(got - first).max() > 1e-3
    np.testing.assert_array_equal(attention_map(keyed, 8, (8, 8))[:4], torch.ones(4, 8, 8))


def test_a_mask_file_or_folder_is_read_in_grey_and_held_until_the_next(tmp_path):
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(tmp_path / "grey.png")
    folder = tmp_path / "masks"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "2.png")
    grey = attention_map(tmp_path / "grey.png", 3, (4, 4))
    torch.testing.assert_close(grey, torch.full((3, 4, 4), 128 / 255))
    keyed = attention_map(folder, 4, (4, 4))
    assert keyed[:2].eq(1).all() and keyed[2:].eq(0).all()


def test_the_cli_and_a_run_entry_draw_what_the_library_draws(tmp_path, base_folder, one_thread):
    import yaml

    from animatediff.formats import save_motion_modules
    from animatediff.model_cache import ModelCache
    from animatediff.pipeline import AnimationPipeline
    from animatediff.prompt_config import run_prompt_config
    from tests.cli_helpers import assert_run_drew, generate
    from tests.tiny import tiny_motion

    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    mask = np.zeros((16, 16), np.uint8)
    mask[:, :8] = 255
    Image.fromarray(mask).save(tmp_path / "left.png")
    extra = ["--motion-attention-scale", "1.7", "--motion-attention-mask", str(tmp_path / "left.png"),
             "--motion-attention-scale-steps", "0.5:0.6"]  # fmt: skip
    assert generate(base_folder, motion, tmp_path / "o.npy", *extra) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    expected = pipe("a fox", "", seed=3, num_frames=4, num_inference_steps=4, progress=False,
                    motion_attention_scale=1.7, motion_attention_mask=tmp_path / "left.png",
                    motion_attention_scale_steps={0.5: 0.6})  # fmt: skip
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected[0])
    assert np.abs(pipe("a fox", "", seed=3, num_frames=4, num_inference_steps=4, progress=False) - expected).max() > 0
    entry = {"motion_module": str(motion), "prompt": ["a fox"], "seed": 3, "steps": 4, "L": 4}
    entry |= {
        "motion_attention_scale": 1.7,
        "motion_attention_mask": "left.png",
        "motion_attention_scale_steps": {0.5: 0.6},
    }
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump([entry]))
    run_prompt_config(tmp_path / "entry.yaml", base_folder, tmp_path / "runs", ModelCache(), progress=False)
    assert_run_drew(tmp_path / "runs", expected[0], tmp_path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(motion_attention_scale=-1), "must be a number ≥ 0"),
        (dict(motion_attention_scale=float("nan")), "must be a number ≥ 0"),
        (dict(motion_attention_mask="/nowhere/mask.png"), "file not found"),
    ],
)
def test_bad_input_is_one_line(make_pipeline, kwargs, message):
    pipe = make_pipeline("v2")
    with pytest.raises(InputError, match=message):
        pipe("a cat", num_frames=4, height=16, width=16, num_inference_steps=1, progress=False, **kwargs)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--motion-attention-scale", "-0.5"], "must be a number ≥ 0"),
        (["--motion-attention-mask", "/nowhere/mask.png"], "--motion-attention-mask: not found"),
        (["--motion-attention-scale-steps", "0.5:-1"], "must be a number ≥ 0"),
        (["--motion-attention-scale-steps", "2:1"], "is not a fraction of the steps"),
    ],
)
def test_cli_bad_input_is_one_line_before_loading(tmp_path, capsys, monkeypatch, extra, message):
    from tests.cli_helpers import generate_error

    assert message in generate_error(tmp_path, capsys, monkeypatch, *extra)


def test_a_run_entrys_bad_scale_is_one_line(tmp_path):
    import yaml

    from animatediff.prompt_entries import load_prompt_config

    (tmp_path / "entry.yaml").write_text(yaml.safe_dump([{"prompt": ["a fox"], "motion_attention_scale": "big"}]))
    with pytest.raises(InputError, match="motion_attention_scale 'big' must be a number ≥ 0"):
        load_prompt_config(tmp_path / "entry.yaml")
    grouped = {"prompt": ["a fox"], "motion_attention_scale_steps": {0.5: {"up": 1.0}}}
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump([grouped]))
    with pytest.raises(InputError, match="motion_attention_scale_steps 0.5: .* must be a number ≥ 0"):
        load_prompt_config(tmp_path / "entry.yaml")
