"""`--compile` (`models/regional_compile.py`): the UNet's blocks and motion modules compiled one by one give the
frames the eager UNet gives; where torch.compile cannot run, one line says why and the run goes on uncompiled."""

import logging

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel

from animatediff.errors import InputError
from animatediff.models import inflate_unet
from animatediff.models import regional_compile as rc
from animatediff.pipeline import AnimationPipeline
from tests.tiny import official_scheduler, tiny_motion, tiny_text_encoder, tiny_vae

RUN = dict(prompt="a fox", num_frames=4, height=16, width=16, num_inference_steps=2, seed=3, progress=False)
COMPILED_TOLERANCE = 1e-4
"""Inductor fuses and reorders float32 sums: measured 2.6e-6 on this one-level UNet, 3.5e-6 on the two-level one."""


@pytest.fixture
def fresh(monkeypatch):
    """A process where torch.compile has not failed yet."""
    monkeypatch.setattr(rc, "_failure", [])


def one_level_pipeline(tokenizer) -> AnimationPipeline:
    """A UNet of one level with cross-attention everywhere: every kind of region (ResNets, spatial transformers,
    the mid block, motion modules) in a few shapes, so inductor compiles few graphs."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32,),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    ).eval()
    inflated = inflate_unet(unet, tiny_motion("v2", channels=(32,)))
    return AnimationPipeline(tokenizer, tiny_text_encoder(len(tokenizer)), tiny_vae(), inflated, official_scheduler())


def test_regions_are_the_blocks_and_motion_modules(make_pipeline):
    unet = make_pipeline("v2").unet
    regions = list(rc.compile_regions(unet))
    inner = unet.unet
    blocks = [*inner.down_blocks, inner.mid_block, *inner.up_blocks]
    layers = sum(len(b.resnets) + len(getattr(b, "attentions", None) or ()) for b in blocks)
    assert len(regions) == layers + 2 * 2 + 1 + 3 * 2  # + the motion modules: 2 down, 3 up per level, 1 mid
    assert len({id(r) for r in regions}) == len(regions)


def test_compile_refusing_up_front_logs_one_line_and_runs_uncompiled(
    make_pipeline, monkeypatch, fresh, caplog, one_thread
):
    pipe = make_pipeline()
    reference = pipe(**RUN)

    def refuse(*args, **kwargs):
        raise RuntimeError("torch.compile is not supported on this platform\nmore detail")

    monkeypatch.setattr(torch, "compile", refuse)
    with caplog.at_level(logging.WARNING, logger="animatediff"):
        assert pipe.compile_unet() == 0
    assert [r.getMessage() for r in caplog.records] == [
        "torch.compile failed (RuntimeError: torch.compile is not supported on this platform); the UNet runs uncompiled"
    ]
    assert not rc.is_compiled(pipe.unet)
    np.testing.assert_array_equal(pipe(**RUN), reference)


def test_compile_failing_at_the_first_call_falls_back_once_and_keeps_the_frames(
    make_pipeline, monkeypatch, fresh, caplog
):
    pipe = make_pipeline()
    reference = pipe(**RUN)
    calls = []

    def broken_compile(fn, **kwargs):
        def compiled(*args, **kw):
            calls.append(fn)
            raise OSError("no C++ compiler found")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(rc, "compile_unavailable", lambda device: None)  # let it try
    with caplog.at_level(logging.WARNING, logger="animatediff"):
        assert pipe.compile_unet() == len(list(rc.compile_regions(pipe.unet)))
        assert rc.is_compiled(pipe.unet)
        np.testing.assert_array_equal(pipe(**RUN), reference)
        np.testing.assert_array_equal(pipe(**RUN), reference)
    assert len(calls) == 1  # the first region's failure turned every region eager for the rest of the process
    assert [r.getMessage() for r in caplog.records] == [
        "torch.compile failed (OSError: no C++ compiler found); the UNet runs uncompiled"
    ]
    pipe.uncompile_unet()
    assert not rc.is_compiled(pipe.unet)


def test_an_input_error_inside_a_region_is_not_a_compile_failure(fresh):
    def compiled(*args):
        raise InputError("40 frames requested")

    region = rc._CompiledForward(lambda *args: "eager", compiled)
    with pytest.raises(InputError):
        region(1)
    assert rc._failure == []


def test_no_cpp_compiler_is_said_before_compiling(make_pipeline, monkeypatch, fresh, caplog, one_thread):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(rc.shutil, "which", lambda name: None)
    assert "C++ compiler" in rc.compile_unavailable("cpu")
    with caplog.at_level(logging.WARNING, logger="animatediff"):
        assert make_pipeline().compile_unet() == 0
    assert len(caplog.records) == 1 and "cannot run here (inductor compiles CPU code" in caplog.records[0].getMessage()


@pytest.mark.slow
def test_compiled_unet_gives_the_frames_of_the_eager_one(tokenizer, fresh, one_thread):
    reason = rc.compile_unavailable("cpu")
    if reason is not None:
        pytest.skip(f"torch.compile cannot run on this machine: {reason}")
    pipe = one_level_pipeline(tokenizer)
    reference = pipe(**RUN)
    assert pipe.compile_unet() > 0
    compiled = pipe(**RUN)  # the first call compiles (the slow part of this test)
    assert not rc._failure, rc._failure
    assert np.abs(compiled - reference).max() < COMPILED_TOLERANCE
