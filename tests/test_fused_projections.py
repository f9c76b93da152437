"""Fused projections compute what the separate ones do: q, k, v from one matmul in the motion modules' temporal
attention and the UNet's spatial self-attention, the GEGLU's two halves as two matmuls (the motion modules' and the
UNet's); wrapped projections (a training LoRA) keep their own path."""

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from einops import rearrange
from torch import nn

from animatediff.models import inflate_unet
from animatediff.models.attention import FusedSelfAttnProcessor
from animatediff.models.feed_forward import SplitGEGLU
from animatediff.models.motion_module import GEGLU, TemporalSelfAttention
from tests.tiny import tiny_motion, tiny_unet


class Shifted(nn.Linear):
    """A projection wrapped so its output is not x·Wᵀ alone, as a LoRA-wrapped layer's is not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 0.5


def separate_temporal_attention(attention: TemporalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The temporal attention with q, k and v each from its own projection module."""
    x = attention.pos_encoder(x)
    q, k, v = (
        rearrange(proj(x), "n f (heads d) -> n heads f d", heads=attention.heads)
        for proj in (attention.to_q, attention.to_k, attention.to_v)
    )
    out = F.scaled_dot_product_attention(q, k, v)
    return attention.to_out[0](rearrange(out, "n heads f d -> n f (heads d)"))


def test_temporal_attention_fused_qkv_equals_separate_projections_and_keeps_wrapped_ones():
    torch.manual_seed(0)
    attention = TemporalSelfAttention(32, heads=4, max_len=16).eval()
    x = torch.randn(6, 9, 32)
    with torch.no_grad():
        torch.testing.assert_close(attention(x), separate_temporal_attention(attention, x), rtol=0, atol=1e-5)
        shifted = Shifted(32, 32, bias=False)
        shifted.weight.copy_(attention.to_v.weight)
        attention.to_v = shifted
        wrapped = attention(x)
        torch.testing.assert_close(wrapped, separate_temporal_attention(attention, x), rtol=0, atol=1e-5)
        attention.to_v = nn.Linear(32, 32, bias=False)
        attention.to_v.weight.copy_(shifted.weight)
        assert (wrapped - attention(x)).abs().max() > 1e-3  # the wrapper's shift was used, not its weight alone


def test_geglu_halves_equal_the_chunked_projection():
    torch.manual_seed(0)
    geglu = GEGLU(16, 64)
    x = torch.randn(5, 7, 16)
    value, gate = geglu.proj(x).chunk(2, dim=-1)
    torch.testing.assert_close(geglu(x), value * F.gelu(gate), rtol=0, atol=1e-5)
    with torch.no_grad():  # the GELU and the product in the halves' own buffers
        torch.testing.assert_close(geglu(x), value * F.gelu(gate), rtol=0, atol=1e-5)
    x.requires_grad_(True)
    geglu(x).square().sum().backward()  # trains: the split path is differentiable
    assert x.grad is not None and geglu.proj.weight.grad is not None


def test_fused_self_attention_processor_equals_diffusers_and_is_installed_on_self_attention_only():
    torch.manual_seed(0)
    attn = Attention(32, heads=4, dim_head=8).eval()
    x = torch.randn(3, 10, 32)
    with torch.no_grad():
        reference = AttnProcessor2_0()(attn, x)
        torch.testing.assert_close(FusedSelfAttnProcessor()(attn, x), reference, rtol=0, atol=1e-5)
        attn.to_v = Shifted(32, 32, bias=False)  # wrapped: diffusers' own path, the wrapper included
        torch.testing.assert_close(FusedSelfAttnProcessor()(attn, x), AttnProcessor2_0()(attn, x), rtol=0, atol=1e-6)

    unet = tiny_unet()
    anim = inflate_unet(unet, tiny_motion("v2"))
    kinds = {name: type(m.processor).__name__ for name, m in unet.named_modules() if isinstance(m, Attention)}
    assert kinds and all(
        kind == ("SharedContextCrossAttnProcessor" if name.endswith("attn2") else "FusedSelfAttnProcessor")
        for name, kind in kinds.items()
    )
    anim.remove()
    assert all(type(m.processor) is AttnProcessor2_0 for m in unet.modules() if isinstance(m, Attention))


def test_only_plain_linears_in_place_are_read_as_weights():
    from animatediff.models.fused_linear import plain_linears

    cpu = torch.device("cpu")
    plain, biased = nn.Linear(4, 4, bias=False), nn.Linear(4, 4)
    assert plain_linears((plain, plain), cpu, bias=False) and plain_linears((biased,), cpu, bias=True)
    assert not plain_linears((plain, biased), cpu, bias=False)  # a bias where none is expected
    assert not plain_linears((plain, Shifted(4, 4)), cpu)  # wrapped: its own forward
    hooked = nn.Linear(4, 4, bias=False)
    hooked._hf_hook = object()  # accelerate's offload hook: weights moved in only when called
    assert not plain_linears((hooked,), cpu)
    assert not plain_linears((nn.Linear(4, 4, device="meta"),), cpu)  # weights not on the input's device


def test_the_unets_geglus_split_equal_diffusers_and_go_back_on_removal():
    from diffusers.models.activations import GEGLU as DiffusersGEGLU

    torch.manual_seed(0)
    unet = tiny_unet()
    keys = set(unet.state_dict())
    anim = inflate_unet(unet, tiny_motion("v2"))
    geglus = [m for m in unet.modules() if isinstance(m, DiffusersGEGLU)]
    assert geglus and all(type(m) is SplitGEGLU for m in geglus)
    assert set(unet.state_dict()) == keys  # the same modules and names
    layer = geglus[0]
    x = torch.randn(2, 5, layer.proj.in_features)
    value, gate = layer.proj(x).chunk(2, dim=-1)
    expected = value * F.gelu(gate)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-5)  # with autograd
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-5)
        plain = layer.proj
        layer.proj = Shifted(plain.in_features, plain.out_features)  # wrapped: diffusers' own path
        layer.proj.load_state_dict(plain.state_dict())
        torch.testing.assert_close(layer(x), DiffusersGEGLU.forward(layer, x), rtol=0, atol=0)
        layer.proj = plain
    anim.remove()
    assert all(type(m) is DiffusersGEGLU for m in geglus)


def test_a_residual_goes_into_the_output_only_where_the_sum_fits_it():
    from animatediff.models.fused_linear import plus_residual

    out, residual = torch.ones(2, 3), torch.full((2, 3), 2.0)
    total = plus_residual(out, residual)
    assert total is out and torch.equal(total, torch.full((2, 3), 3.0))
    half = torch.ones(2, 3, dtype=torch.float16)
    total = plus_residual(half, residual)  # autocast's half output plus a float32 residual: a float32 sum
    assert total.dtype == torch.float32 and torch.equal(half, torch.ones(2, 3, dtype=torch.float16))
    assert plus_residual(torch.ones(1, 3), residual).shape == (2, 3)  # broadcast: a new tensor
