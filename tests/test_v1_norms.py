import torch
from torch import nn

from animatediff.models import inflate_unet
from animatediff.models.inflate import ClipGroupNorm
from tests.tiny import tiny_motion, tiny_unet


def resnet_norms(unet):
    return {n: m for n, m in unet.named_modules() if n.endswith(("norm1", "norm2")) and ".resnets." in n}


def test_v1_switch_changes_only_resnet_norms_and_only_for_v1():
    v3 = inflate_unet(tiny_unet(), tiny_motion("v3"))
    assert not v3.clip_norms
    assert all(type(m) is nn.GroupNorm for m in v3.unet.modules() if isinstance(m, nn.GroupNorm))

    unet = tiny_unet()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    v1 = inflate_unet(unet, tiny_motion("v1"))
    assert v1.clip_norms
    switched = {n for n, m in unet.named_modules() if isinstance(m, ClipGroupNorm)}
    assert switched == set(resnet_norms(unet)) | {"conv_norm_out"}
    # Spatial-attention and motion-module norms stay per frame; weights are untouched.
    assert all(type(m.norm) is nn.GroupNorm for m in unet.modules() if hasattr(m, "proj_in") and hasattr(m, "norm"))
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())


def test_clip_norm_uses_statistics_over_all_frames():
    unet = tiny_unet()
    anim = inflate_unet(unet, tiny_motion("v1"))
    norm = unet.conv_norm_out
    x = torch.randn(2 * 3, 32, 4, 4) * torch.arange(1, 7).view(6, 1, 1, 1)  # frames with different scales
    anim.frames.num_frames = 3
    clip = norm(x)
    anim.frames.num_frames = None
    per_frame = norm(x)
    assert not torch.allclose(clip, per_frame, atol=1e-3)
    expected = nn.functional.group_norm(x.view(2, 3, 32, 4, 4).transpose(1, 2), 32, norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(clip, expected.transpose(1, 2).reshape(6, 32, 4, 4))


def test_v1_output_differs_from_per_frame_norms():
    unet = tiny_unet()
    anim = inflate_unet(unet, tiny_motion("v1"))
    x, ctx = torch.randn(1, 4, 4, 8, 8), torch.randn(1, 7, 32)
    with torch.no_grad():
        a = anim(x, 10, ctx)
        anim.set_clip_norms(False)
        b = anim(x, 10, ctx)
    assert (a - b).abs().max() > 1e-3
