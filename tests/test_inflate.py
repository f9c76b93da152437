import torch

from animatediff.models import inflate_unet
from tests.tiny import tiny_motion, tiny_unet


def test_zero_motion_module_is_the_image_model():
    unet = tiny_unet()
    anim = inflate_unet(unet, tiny_motion(random=False))
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 8, 8)
    ctx = torch.randn(2, 7, 32)
    with torch.no_grad():
        video = anim(x, 10, ctx)
        for i in range(5):
            frame = unet(x[:, :, i], 10, encoder_hidden_states=ctx).sample
            torch.testing.assert_close(video[:, :, i], frame, rtol=0, atol=1e-5)


def test_shared_text_context_equals_per_frame_context():
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet = tiny_unet()
    anim = inflate_unet(unet, tiny_motion("v2"))
    torch.manual_seed(0)
    x, ctx = torch.randn(2, 4, 5, 8, 8), torch.randn(2, 7, 32)
    with torch.no_grad():
        shared = anim(x, 10, ctx)
        per_frame = anim(x, 10, ctx[:, None].expand(-1, 5, -1, -1))  # (b, f, n, d): the context repeated per frame
        unet.set_attn_processor(AttnProcessor2_0())  # another processor: inflation falls back to repeating
        fallback = anim(x, 10, ctx)
    torch.testing.assert_close(shared, per_frame, rtol=0, atol=1e-5)
    torch.testing.assert_close(shared, fallback, rtol=0, atol=1e-5)
