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
