"""The pipeline's parts: conditions reach the UNet at every step and follow context windows; several compose."""

import numpy as np
import pytest
import torch

from animatediff.pipeline import merge_unet_kwargs

# (channels, downsampling) of the tiny UNet's skip connections: conv_in, block 0's two layers and downsampler, block 1's
# two layers; its middle is (64, 2).
SKIPS = ((32, 1), (32, 1), (32, 1), (32, 2), (64, 2), (64, 2))


class MidResidual:
    """A stand-in for a ControlNet: zero residuals on the skip connections and a constant one on the middle (diffusers
    takes both or neither), recording what it was asked for."""

    def __init__(self, value: float) -> None:
        self.value, self.calls = value, []

    def unet_kwargs(self, x, t, text, frames):  # noqa: ANN001, ANN201
        self.calls.append((x.shape[0], frames.tolist()))
        b, _, f, h, w = x.shape  # frames are folded into the batch in the 2-D UNet
        skips = tuple(torch.zeros(b * f, c, h // s, w // s) for c, s in SKIPS)
        mid = torch.full((b * f, 64, h // 2, w // 2), self.value)
        return {"down_block_additional_residuals": skips, "mid_block_additional_residual": mid}


def test_merging_sums_residuals_and_joins_mappings():
    a = {"down_block_additional_residuals": (torch.ones(2), torch.ones(3)), "added_cond_kwargs": {"image_embeds": 1}}
    b = {"down_block_additional_residuals": (torch.ones(2), 2 * torch.ones(3)), "mid": torch.ones(1)}
    merged = merge_unet_kwargs([a, b])
    assert [r.tolist() for r in merged["down_block_additional_residuals"]] == [[2, 2], [3, 3, 3]]
    assert merged["added_cond_kwargs"] == {"image_embeds": 1} and merged["mid"].tolist() == [1]
    assert merge_unet_kwargs([]) == {}
    with pytest.raises(ValueError, match="both set added_cond_kwargs"):
        merge_unet_kwargs([a, {"added_cond_kwargs": {"image_embeds": 2}}])


def test_conditions_steer_every_step_and_compose(make_pipeline):
    pipe = make_pipeline()
    run = dict(num_frames=4, num_inference_steps=3, seed=0, progress=False)
    plain = pipe("a fox", **run)
    zero = MidResidual(0.0)
    np.testing.assert_array_equal(pipe("a fox", conditions=[zero], **run), plain)
    assert zero.calls == [(2, [0, 1, 2, 3])] * 3  # every step, on the guided batch (uncond + cond)
    one = pipe("a fox", conditions=[MidResidual(1.0)], **run)
    assert np.abs(one - plain).max() > 1e-3
    halves = pipe("a fox", conditions=[MidResidual(0.5), MidResidual(0.5)], **run)
    np.testing.assert_allclose(halves, one, atol=1e-5)


def test_each_context_window_asks_its_conditions_for_its_own_frames(make_pipeline):
    pipe = make_pipeline()
    seen = MidResidual(0.0)
    pipe("a fox", num_frames=10, num_inference_steps=1, context_length=6, context_overlap=2, conditions=[seen])
    assert seen.calls == [(2, [0, 1, 2, 3, 4, 5]), (2, [4, 5, 6, 7, 8, 9])]
