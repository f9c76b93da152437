"""Small-GPU modes (`pipeline/memory.py`): each gives the frames it gives without it, or within the tolerance it
implies, on tiny models; offload on the CPU (execution device "cpu") checks the hooks and that the math is unchanged,
as moving weights from CPU memory to the CPU changes nothing else."""

import argparse
import sys

import numpy as np
import pytest
import torch
import yaml

from animatediff.cli import main
from animatediff.cli.memory_options import memory_from_args
from animatediff.errors import InputError
from animatediff.formats import save_motion_modules
from animatediff.model_cache import ModelCache, PipelineSpec
from animatediff.models import AnimationUNet
from animatediff.models.motion_module import MotionModule, TemporalTransformer
from animatediff.pipeline.memory import MemoryOptions
from animatediff.text_encoding import input_device
from tests.test_run_matches_generate import gif_frames
from tests.tiny import tiny_motion

RUN = dict(prompt="a fox", num_frames=6, height=16, width=16, num_inference_steps=2, seed=3, progress=False)
TILED = dict(RUN, height=32, width=32)  # latents 16 × 16: past the tiny VAE's 8 × 8 latent tiles, so tiling engages
TILING_MAX, TILING_MEAN = 0.5, 0.1
"""Tiled against untiled frames on the tiny random VAE (values in [0, 1]): measured max 0.33, mean 0.035. Tiles are
decoded apart and blended over a quarter of a tile, so pixels near the seams differ; diffusers' own tests bound
this at 0.2-0.7 on their tiny VAEs. On a trained VAE at its 512/1024 px tiles the seams are far less visible."""


def _args(**kw) -> argparse.Namespace:
    values = dict(vae_slicing=16, vae_tiling=False, offload="none", ff_chunk=None, compile=False)
    return argparse.Namespace(**{**values, "free_text_encoder": False, "channels_last": False, **kw})


def test_vae_slicing_gives_the_same_frames(make_pipeline, one_thread):
    pipe = make_pipeline()
    reference = pipe(**RUN)
    pipe.decode_chunk_size = 1  # one frame per VAE call, for every call that names none
    np.testing.assert_allclose(pipe(**RUN), reference, rtol=0, atol=1e-6)  # measured: 6.6e-7 (conv sums' order)
    np.testing.assert_allclose(pipe(**RUN, decode_chunk_size=4), reference, rtol=0, atol=1e-6)
    with pytest.raises(InputError, match="decode_chunk_size must be at least 1 frame, got 0"):
        pipe(**RUN, decode_chunk_size=0)


def test_channels_last_keeps_the_frames_and_can_be_undone(make_pipeline, one_thread):
    pipe = make_pipeline()
    reference = pipe(**RUN)
    pipe.apply_memory_options(MemoryOptions(channels_last=True))
    conv = pipe.unet.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    np.testing.assert_allclose(pipe(**RUN), reference, rtol=0, atol=1e-5)  # NHWC convolutions: sums in another order
    pipe.apply_memory_options(MemoryOptions())
    assert pipe.unet.unet.conv_in.weight.is_contiguous()
    np.testing.assert_array_equal(pipe(**RUN), reference)
    assert memory_from_args(_args(channels_last=True), "cpu").channels_last


def test_vae_tiling_engages_past_a_tile_and_stays_within_its_tolerance(make_pipeline, one_thread):
    pipe = make_pipeline()
    small, large = pipe(**RUN), pipe(**TILED)
    pipe.enable_vae_tiling()
    np.testing.assert_array_equal(pipe(**RUN), small)  # within one tile: untouched
    tiled = pipe(**TILED)
    difference = np.abs(tiled - large)
    assert 1e-3 < difference.max() < TILING_MAX and difference.mean() < TILING_MEAN

    # Video-to-video encodes in tiles too.
    encodes = []
    tiled_encode = pipe.vae._tiled_encode
    pipe.vae._tiled_encode = lambda x: encodes.append(x.shape) or tiled_encode(x)
    clip = np.random.default_rng(0).random((6, 32, 32, 3), dtype=np.float32)
    pipe(**{**TILED, "num_inference_steps": 1}, video=clip, strength=1.0)
    assert encodes and encodes[0][-2:] == (32, 32)
    pipe.disable_vae_tiling()
    np.testing.assert_array_equal(pipe(**TILED), large)


def test_ff_chunk_runs_the_feed_forward_in_chunks_with_the_same_frames(make_pipeline, one_thread):
    pipe = make_pipeline()
    reference = pipe(**RUN)
    ff = next(m for m in pipe.unet.motion_modules.modules() if isinstance(m, TemporalTransformer))
    ff = ff.transformer_blocks[0].ff
    calls = []
    ff.register_forward_hook(lambda _m, args, _out: calls.append(args[0].shape[0]))
    pipe.set_ff_chunk(7)  # not a divisor of the 2 × 8 × 8 = 128 sequences at the first level
    chunked = pipe(**RUN)
    assert np.abs(chunked - reference).max() <= 1e-6  # measured: 0 (each sequence is computed alone either way)
    assert max(calls) == 7 and calls[:19] == [7] * 18 + [2]  # one guided step at the first level: 128 = 18 × 7 + 2
    pipe.set_ff_chunk(None)
    np.testing.assert_array_equal(pipe(**RUN), reference)
    with pytest.raises(InputError, match="ff_chunk must be at least 1"):
        pipe.set_ff_chunk(0)


def test_model_offload_chains_the_models_frees_the_text_encoder_and_keeps_the_frames(
    make_pipeline, monkeypatch, one_thread
):
    from accelerate.hooks import CpuOffload, UserCpuOffloadHook

    pipe = make_pipeline("v1")  # v1: the ResNets' clip-wide norms move with the UNet too
    reference = pipe(**RUN)
    pipe.enable_model_cpu_offload("cpu")
    hooks = pipe._offload_hooks
    assert pipe.offload == "model" and pipe.device == torch.device("cpu")
    assert isinstance(pipe.unet._hf_hook, CpuOffload) and isinstance(pipe.text_encoder._hf_hook, CpuOffload)
    # The inflated UNet is one offloaded module: its motion modules move with it.
    assert hooks["unet"].model is pipe.unet and isinstance(pipe.unet, AnimationUNet)
    assert hooks["unet"].hook.prev_module_hook is hooks["text_encoder"]
    assert hooks["vae"].hook.prev_module_hook is hooks["unet"]

    events = []
    offload = UserCpuOffloadHook.offload
    monkeypatch.setattr(UserCpuOffloadHook, "offload", lambda h: events.append(type(h.model).__name__) or offload(h))
    pipe.unet.unet.register_forward_pre_hook(lambda *_: events.append("UNet step"))
    np.testing.assert_array_equal(pipe(**RUN), reference)
    assert events[0] == "CLIPTextModel" and events.index("UNet step") == 1  # freed right after the text step
    assert set(events[-3:]) == {"CLIPTextModel", "AnimationUNet", "AutoencoderKL"}  # all back after the call

    pipe.disable_cpu_offload()
    assert pipe.offload == "none" and not hasattr(pipe.unet, "_hf_hook")
    np.testing.assert_array_equal(pipe(**RUN), reference)


@pytest.mark.parametrize("kind", ["v1", "norm_over_frames"])
def test_sequential_offload_gives_the_motion_modules_their_weights_and_the_same_frames(make_pipeline, kind, one_thread):
    pipe = make_pipeline("v1" if kind == "v1" else "v3")
    for module in pipe.unet.motion_modules.modules():
        if isinstance(module, TemporalTransformer):
            module.norm_over_frames = kind == "norm_over_frames"  # the SDXL modules' clip-wide input norm
    reference = pipe(**RUN)
    pipe.enable_sequential_cpu_offload("cpu")
    layer = next(m for m in pipe.unet.motion_modules.modules() if isinstance(m, MotionModule))
    layer = layer.temporal_transformer.proj_in
    seen = []
    forward = layer._old_forward  # what accelerate's hook runs once it has moved the weights in
    layer._old_forward = lambda x: seen.append(layer.weight.device) or forward(x)
    # Offloaded layers are called one by one (fused q/k/v reads weights, which the hooks move in only for a call):
    # the same products, summed in another order.
    np.testing.assert_allclose(pipe(**RUN), reference, rtol=0, atol=1e-5)
    assert seen and set(seen) == {torch.device("cpu")}  # on the execution device inside the call
    assert layer.weight.device.type == "meta" and layer._hf_hook.execution_device == torch.device("cpu")
    text_weight = next(pipe.text_encoder.parameters())
    assert text_weight.device.type == "meta" and input_device(pipe.text_encoder) == torch.device("cpu")
    layer._old_forward = forward
    pipe.disable_cpu_offload()
    assert layer.weight.device.type == "cpu"
    np.testing.assert_array_equal(pipe(**RUN), reference)


def test_free_text_encoder_moves_it_to_the_device_for_the_text_step_only(make_pipeline, monkeypatch, one_thread):
    pipe = make_pipeline()
    reference = pipe(**RUN)
    moves = []
    to = pipe.text_encoder.to
    monkeypatch.setattr(pipe.text_encoder, "to", lambda device: moves.append(str(device)) or to(device))
    pipe.unet.register_forward_pre_hook(lambda *_: moves.append("UNet step"))
    pipe.free_text_encoder = True
    np.testing.assert_array_equal(pipe(**RUN), reference)
    assert moves[:3] == ["cpu", "cpu", "UNet step"]  # to the device (the CPU here) for the text step, then back


def test_offload_without_accelerate_is_one_line(make_pipeline, monkeypatch):
    monkeypatch.setitem(sys.modules, "accelerate", None)  # import accelerate now raises ImportError
    with pytest.raises(InputError, match="needs accelerate, which is not installed: pip install accelerate"):
        make_pipeline().enable_model_cpu_offload("cpu")
    with pytest.raises(InputError, match="--offload sequential needs accelerate"):
        memory_from_args(_args(offload="sequential"), "cuda")


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(vae_slicing=0), "vae_slicing must be at least 1 frame, got 0"),
        (dict(ff_chunk=0), "ff_chunk must be at least 1 sequence"),
        (dict(offload="disk"), "offload 'disk': expected one of none, model, sequential"),
        (dict(offload="sequential", compile=True), "compile with sequential offload"),
    ],
)
def test_bad_memory_options_are_input_errors(options, message):
    with pytest.raises(InputError, match=message):
        MemoryOptions(**options)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--vae-slicing", "0"], "--vae-slicing must be at least 1, got 0"),
        (["--ff-chunk", "-2"], "--ff-chunk must be at least 1, got -2"),
        (["--offload", "model"], "--offload model needs a GPU (--device cuda)"),
    ],
)
def test_bad_memory_flags_are_one_line_before_models_load(tmp_path, capsys, extra, message):
    missing = str(tmp_path / "nowhere")  # models that do not exist: the flag is said first
    for command in (
        [
            "generate",
            "--base",
            missing,
            "--motion-module",
            missing,
            "--prompt",
            "a fox",
            "--output",
            str(tmp_path / "o.npy"),
        ],
        ["run", str(tmp_path / "c.yaml"), "--base", missing, "--output-dir", str(tmp_path / "out")],
    ):
        if command[0] == "run":
            (tmp_path / "c.yaml").write_text(f"- motion_module: {missing}\n  prompt: [a fox]\n")
        assert main([*command, "--device", "cpu", "--quiet", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err


def test_compile_with_sequential_offload_is_refused_in_one_line():
    with pytest.raises(InputError, match="--compile with --offload sequential"):
        memory_from_args(_args(offload="sequential", compile=True), "cuda")


def test_generate_and_run_with_memory_flags_draw_the_same_frames(tmp_path, base_folder, one_thread):
    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    common = ["--base", str(base_folder), "--quiet", "--device", "cpu"]
    drawn = ["--motion-module", str(motion), "--prompt", "a fox", "--frames", "4", "--steps", "2", "--seed", "1"]
    flags = ["--vae-slicing", "1", "--ff-chunk", "5", "--free-text-encoder"]
    assert main(["generate", *common, *drawn, "--output", str(tmp_path / "a.npy")]) == 0
    assert main(["generate", *common, *drawn, *flags, "--output", str(tmp_path / "b.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), np.load(tmp_path / "a.npy"), rtol=0, atol=1e-6)

    entry = {"motion_module": str(motion), "prompt": ["a fox"], "seed": 1, "steps": 2, "L": 4}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump([entry]))
    assert main(["run", str(tmp_path / "c.yaml"), *common, *flags, "--output-dir", str(tmp_path / "runs")]) == 0
    assert main(["generate", *common, *drawn, "--output", str(tmp_path / "a.gif")]) == 0
    (gif,) = (tmp_path / "runs").glob("c-*/sample/0-*.gif")
    np.testing.assert_array_equal(gif_frames(gif), gif_frames(tmp_path / "a.gif"))


def test_model_cache_sets_the_options_again_on_a_swapped_motion_module(base_folder, tmp_path, one_thread):
    a = str(save_motion_modules(tiny_motion("v2", seed=1), tmp_path / "a.safetensors"))
    b = str(save_motion_modules(tiny_motion("v2", seed=4), tmp_path / "b.safetensors"))
    cache = ModelCache(memory=MemoryOptions(vae_slicing=2, ff_chunk=3, offload="model"))
    pipe = cache.pipeline(PipelineSpec(str(base_folder), a))
    assert pipe.decode_chunk_size == 2 and pipe.offload == "model" and pipe._offload_hooks["unet"].model is pipe.unet
    pipe = cache.pipeline(PipelineSpec(str(base_folder), b))
    assert pipe._offload_hooks["unet"].model is pipe.unet  # the new inflated UNet is the one offloaded
    blocks = [m for m in pipe.unet.motion_modules.modules() if hasattr(m, "ff_chunk")]
    assert blocks and all(block.ff_chunk == 3 for block in blocks)
    assert pipe(**{**RUN, "num_frames": 2, "num_inference_steps": 1}).shape == (1, 2, 16, 16, 3)
