"""FreeNoise's parts on their own: options, windows and weights, the fused attention, the rescheduled noise."""

from types import SimpleNamespace

import pytest
import torch
from diffusers.models.attention import FreeNoiseTransformerBlock
from diffusers.pipelines.free_noise_utils import AnimateDiffFreeNoiseMixin

from animatediff.cli import free_noise_options
from animatediff.errors import InputError
from animatediff.models import MotionModule
from animatediff.models.free_noise import WEIGHTINGS, AttentionWindows, fused_windows, window_spans, window_weights
from animatediff.pipeline.free_noise import NOISE_TYPES, FreeNoise
from animatediff.pipeline.start import free_noise_start, noise_start, reschedule_noise
from tests.tiny import official_scheduler


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(context_length=0), "context_length 0"),
        (dict(context_length=2.5), "context_length 2.5"),
        (dict(context_length=8, context_stride=0), "context_stride 0 must be a whole number from 1"),
        (dict(context_length=8, context_stride=9), "context_stride 9 .* 1 to the context length 8"),
        (dict(weighting="steep"), "weighting 'steep' is not one of: flat, pyramid, delayed_reverse_sawtooth"),
        (dict(noise_type="fresh"), "noise_type 'fresh' is not one of: shuffle_context, repeat_context, random"),
    ],
)
def test_bad_options_are_one_line_input_errors(options, message):
    with pytest.raises(InputError, match=message) as error:
        FreeNoise(**options)
    assert "\n" not in str(error.value)


def test_the_cli_offers_exactly_the_library_choices():
    assert free_noise_options.FREE_NOISE_TYPES == NOISE_TYPES
    assert free_noise_options.FREE_NOISE_WEIGHTINGS == WEIGHTINGS


def _diffusers_block(length: int, stride: int, weighting: str = "pyramid") -> SimpleNamespace:
    return SimpleNamespace(context_length=length, context_stride=stride, weighting_scheme=weighting)


@pytest.mark.parametrize("num_frames, length, stride", [(24, 8, 4), (26, 8, 4), (25, 16, 4), (11, 4, 3), (9, 8, 1)])
def test_windows_are_diffusers_windows(num_frames, length, stride):
    block = _diffusers_block(length, stride)
    expected = FreeNoiseTransformerBlock._get_frame_indices(block, num_frames)
    if expected[-1][1] != num_frames:  # diffusers' forward snaps a last window to the clip's end
        expected.append((num_frames - length, num_frames))
    assert window_spans(num_frames, length, stride) == expected
    assert window_spans(5, 8, 4) == [(0, 5)]  # a clip shorter than a window is one window


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_weights_are_diffusers_weights(weighting):
    for length in range(1, 10):
        expected = FreeNoiseTransformerBlock._get_frame_weights(None, length, weighting)
        assert window_weights(length, weighting).tolist() == pytest.approx(expected), length
    assert window_weights(5, "pyramid").tolist() == [1, 2, 3, 2, 1]


def _window_dependent(x: torch.Tensor) -> torch.Tensor:
    """An 'attention' whose output for a frame depends on the whole window it is in."""
    return torch.tanh(x) + x.mean(dim=1, keepdim=True) ** 2


def test_fused_windows_are_weighted_means_and_a_snapped_window_adds_only_its_new_frames():
    x = torch.randn(3, 12, 5)
    windows = AttentionWindows(4, 3, "pyramid")  # windows [0, 4), [3, 7), [6, 10), then [8, 12) snapped
    out = fused_windows(x, _window_dependent, windows)
    w = window_weights(4)
    a, b = _window_dependent(x[:, 0:4]), _window_dependent(x[:, 3:7])
    torch.testing.assert_close(out[:, 3], (w[3] * a[:, 3] + w[0] * b[:, 0]) / (w[3] + w[0]))
    torch.testing.assert_close(out[:, 5], b[:, 2])  # only the second window holds frame 5
    # Frames 10 and 11 only the snapped window holds: exactly its output (diffusers 0.42 scales frame 11 by w[3]/w[2]).
    torch.testing.assert_close(out[:, 10:], _window_dependent(x[:, 8:12])[:, 2:], rtol=0, atol=0)


def test_one_window_is_the_plain_module_bit_for_bit():
    torch.manual_seed(0)
    module = MotionModule(32, heads=4, max_len=16).eval()
    torch.nn.init.normal_(module.temporal_transformer.proj_out.weight, std=0.2)
    x = torch.randn(2 * 6, 32, 4, 4)
    with torch.no_grad():
        plain = module(x, 6)
        module.set_attention_windows(AttentionWindows(8, 2, "delayed_reverse_sawtooth"))
        windowed_whole = module(x, 6)
        windowed = module(torch.randn(2 * 12, 32, 4, 4), 12)
        module.set_attention_windows(None)
        again = module(x, 6)
    assert torch.equal(plain, windowed_whole) and torch.equal(plain, again)
    assert windowed.shape == (24, 32, 4, 4) and torch.isfinite(windowed).all()


def _diffusers_latents(shape, free_noise: FreeNoise, generator, latents=None) -> torch.Tensor:
    b, c, f, h, w = shape
    pipe = SimpleNamespace(
        _free_noise_context_length=free_noise.context_length,
        _free_noise_context_stride=free_noise.context_stride,
        _free_noise_noise_type=free_noise.noise_type,
        vae_scale_factor=1,
    )
    return AnimateDiffFreeNoiseMixin._prepare_latents_free_noise(
        pipe, b, c, f, h, w, torch.float32, torch.device("cpu"), generator, latents
    )


@pytest.mark.parametrize(
    "shape, length, stride",
    [
        ((1, 4, 24, 8, 8), 8, 4),
        ((1, 4, 26, 8, 8), 8, 4),
        ((2, 4, 11, 2, 3), 4, 3),
        ((1, 2, 30, 2, 2), 8, 8),
        ((1, 2, 20, 2, 2), 8, 1),
        ((1, 4, 5, 8, 8), 8, 4),
    ],
)
@pytest.mark.parametrize("noise_type", ["shuffle_context", "random"])
def test_noise_is_what_diffusers_draws(shape, length, stride, noise_type):
    free_noise = FreeNoise(length, stride, noise_type=noise_type)
    generator = torch.Generator("cpu").manual_seed(3)
    expected = _diffusers_latents(shape, free_noise, generator)
    got = free_noise_start(official_scheduler(), shape, free_noise, seed=3)
    assert torch.equal(got, expected)
    # The same generator, drawn from as far: the scheduler's later draws match too.
    ours = torch.Generator("cpu").manual_seed(3)
    free_noise_start(official_scheduler(), shape, free_noise, generator=ours)
    assert torch.equal(ours.get_state(), generator.get_state())


def test_shuffled_noise_reuses_the_frames_a_window_earlier_in_a_new_order():
    shape = (1, 4, 24, 4, 4)
    noise = free_noise_start(official_scheduler(), shape, FreeNoise(8, 4), seed=1)
    plain = noise_start(official_scheduler(), shape, seed=1)
    assert torch.equal(noise[:, :, :8], plain[:, :, :8])  # the first window is the plain draw
    for i in range(8, 24, 4):
        stretch, source = noise[:, :, i : i + 4], noise[:, :, i - 8 : i - 4]
        matches = [[torch.equal(stretch[:, :, a], source[:, :, b]) for b in range(4)] for a in range(4)]
        assert sorted(row.index(True) for row in matches) == [0, 1, 2, 3]  # a permutation of those frames
    assert not torch.equal(noise[:, :, 8:24], noise[:, :, 0:16])  # shuffled, not merely repeated


def test_repeat_context_repeats_the_first_window():
    shape = (1, 4, 20, 4, 4)
    noise = free_noise_start(official_scheduler(), shape, FreeNoise(8, 4, noise_type="repeat_context"), seed=1)
    assert torch.equal(noise[:, :, 8:16], noise[:, :, :8]) and torch.equal(noise[:, :, 16:], noise[:, :, :4])
    assert noise[:, :, :8].std() > 0.5
    short = free_noise_start(official_scheduler(), (1, 4, 6, 4, 4), FreeNoise(8, noise_type="repeat_context"), seed=1)
    assert torch.equal(short, noise_start(official_scheduler(), (1, 4, 6, 4, 4), seed=1))


def test_given_latents_are_used_whole_or_rescheduled_from_the_first_window():
    scheduler, free_noise = official_scheduler(), FreeNoise(8, 4)
    whole = torch.randn(1, 4, 20, 4, 4)
    assert torch.equal(free_noise_start(scheduler, whole.shape, free_noise, latents=whole), whole)
    first = whole[:, :, :8]
    got = free_noise_start(scheduler, whole.shape, free_noise, seed=5, latents=first)
    assert got.shape == whole.shape and torch.equal(got[:, :, :8], first)
    # Rescheduling overwrites every frame past the first window from earlier ones, as diffusers does to its own
    # draw: the same shuffles whatever the later frames held.
    padded = torch.cat([first, torch.randn(1, 4, 12, 4, 4)], dim=2)
    assert torch.equal(got, reschedule_noise(padded, 20, free_noise, torch.Generator("cpu").manual_seed(5)))
    with pytest.raises(InputError, match=r"latents of shape \(1, 4, 7, 4, 4\) given for FreeNoise: expected"):
        free_noise_start(scheduler, whole.shape, free_noise, latents=whole[:, :, :7])
    with pytest.raises(InputError, match=r"expected \(1, 4, 20, 4, 4\)$"):
        free_noise_start(scheduler, whole.shape, FreeNoise(8, noise_type="random"), latents=first)
