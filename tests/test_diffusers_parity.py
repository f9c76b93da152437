import pytest
import torch

from animatediff.models import inflate_unet
from tests.diffusers_reference import diffusers_motion_unet
from tests.tiny import tiny_motion, tiny_unet


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_inflated_unet_matches_diffusers_unet_motion_model(version):
    unet = tiny_unet()
    modules = tiny_motion(version)
    reference = diffusers_motion_unet(unet, modules)
    ours = inflate_unet(unet, modules)
    torch.manual_seed(0)
    b, f = 2, 6
    x = torch.randn(b, 4, f, 8, 8)
    ctx = torch.randn(b, 7, 32)
    with torch.no_grad():
        expected = reference(x, 500, encoder_hidden_states=ctx.repeat_interleave(f, 0)).sample
        got = ours(x, 500, ctx)
    assert expected.abs().mean() > 0.1
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
