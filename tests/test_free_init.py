"""FreeInit's parts: the settings, the filters (against diffusers', the official box, and analytic sinusoids), the
re-initialisation and the loop around `denoise`."""

import math

import pytest
import torch
from diffusers.pipelines.free_init_utils import FreeInitMixin

from animatediff.errors import InputError
from animatediff.sampling import FreeInit, free_init_denoise, make_scheduler, reinitialize
from animatediff.sampling.free_init import FILTERS, box_filter, mix_frequencies

SHAPES = [(6, 8, 8), (5, 7, 9), (16, 4, 12)]
STOPS = [(0.25, 0.25), (0.4, 0.1), (1.0, 1.0), (0.0, 0.5), (0.3, 0.0)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stops", STOPS)
@pytest.mark.parametrize("method, order", [("butterworth", 4), ("butterworth", 1), ("gaussian", 4), ("ideal", 4)])
def test_filters_are_diffusers(shape, stops, method, order):
    spatial, temporal = stops
    config = FreeInit(filter=method, order=order, spatial_stop=spatial, temporal_stop=temporal)
    expected = FreeInitMixin()._get_free_init_freq_filter((1, 4, *shape), "cpu", method, order, spatial, temporal)
    got = config.low_pass(shape)
    assert got.dtype == torch.float32 and got.shape == shape
    torch.testing.assert_close(got.expand_as(expected), expected, rtol=0, atol=1e-7)


def _official_box(shape, d_s, d_t):  # noqa: ANN001, ANN202
    """github.com/TianxingWu/FreeInit, freq_utils.py, box_low_pass_filter, as written there."""
    T, H, W = shape[-3], shape[-2], shape[-1]
    mask = torch.zeros(shape)
    if d_s == 0 or d_t == 0:
        return mask
    threshold_s = round(int(H // 2) * d_s)
    threshold_t = round(T // 2 * d_t)
    cframe, crow, ccol = T // 2, H // 2, W // 2
    mask[
        ...,
        cframe - threshold_t : cframe + threshold_t,
        crow - threshold_s : crow + threshold_s,
        ccol - threshold_s : ccol + threshold_s,
    ] = 1.0
    return mask


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stops", STOPS)
def test_the_box_filter_is_the_official_one(shape, stops):
    torch.testing.assert_close(box_filter(shape, *stops), _official_box(shape, *stops), rtol=0, atol=0)


def _gain(out: torch.Tensor, wave: torch.Tensor) -> float:
    """How much of `wave` is in `out`: ⟨out, wave⟩ / ⟨wave, wave⟩."""
    return float((out * wave).sum() / (wave * wave).sum())


SIZE = (16, 32, 32)  # frames, height, width


def _wave(axis: str, k: int) -> torch.Tensor:
    """cos(2π k n / N) along one axis of SIZE (k cycles over the clip), constant along the others."""
    f, h, w = SIZE
    n = {"time": f, "width": w}[axis]
    wave = torch.cos(2 * math.pi * k * torch.arange(n, dtype=torch.float32) / n)
    return wave.view(f, 1, 1).expand(SIZE) if axis == "time" else wave.view(1, 1, w).expand(SIZE)


@pytest.mark.parametrize("method", FILTERS)
@pytest.mark.parametrize("axis, low, high", [("width", 1, 12), ("time", 1, 7)])
def test_filters_pass_the_low_band_and_stop_the_high_band(method, axis, low, high):
    """A slow and a fast sinusoid through each filter at the default stops (d_s = d_t = 0.25): the slow one is
    kept from the video, the fast one taken from the noise."""
    mask = FreeInit(filter=method).low_pass(SIZE)
    slow, fast, zeros = _wave(axis, low), _wave(axis, high), torch.zeros(SIZE)
    kept = mix_frequencies(slow + fast, zeros, mask)
    assert _gain(kept, slow) > 0.85 and abs(_gain(kept, fast)) < 0.02
    filled = mix_frequencies(zeros, slow + fast, mask)
    assert abs(_gain(filled, slow)) < 0.15 and _gain(filled, fast) > 0.98
    both = mix_frequencies(slow + fast, slow + fast, mask)
    torch.testing.assert_close(both, slow + fast, rtol=0, atol=1e-5)  # the two bands add up to the whole


def test_a_sinusoids_gain_is_the_filters_formula():
    """A width sinusoid of k cycles sits at d² = (2k/W)²: butterworth keeps 1/(1 + (d²/d_s²)ⁿ) of it, gaussian
    exp(−d²/(2 d_s²))."""
    d_s, n = 0.25, 4
    for k in (1, 3, 6):
        d2 = (2 * k / SIZE[2]) ** 2
        wave = _wave("width", k)
        butterworth = mix_frequencies(wave, torch.zeros(SIZE), FreeInit(order=n).low_pass(SIZE))
        gaussian = mix_frequencies(wave, torch.zeros(SIZE), FreeInit(filter="gaussian").low_pass(SIZE))
        assert _gain(butterworth, wave) == pytest.approx(1 / (1 + (d2 / d_s**2) ** n), abs=1e-5)
        assert _gain(gaussian, wave) == pytest.approx(math.exp(-d2 / (2 * d_s**2)), abs=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"iterations": 0}, "iterations must be an integer of at least 1, got 0"),
        ({"iterations": 2.5}, "iterations must be an integer"),
        ({"filter": "median"}, "filter 'median' is not one of: butterworth, gaussian, ideal, box"),
        ({"spatial_stop": 1.5}, r"spatial_stop must be in \[0, 1\], got 1.5"),
        ({"temporal_stop": -0.1}, r"temporal_stop must be in \[0, 1\], got -0.1"),
        ({"order": 0}, "order must be an integer of at least 1, got 0"),
    ],
)
def test_bad_settings_are_input_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        FreeInit(**kwargs)


def test_fast_sampling_runs_diffusers_step_counts():
    """Coarse to fine: max(1, int(steps / n · (i + 1))) steps in run i, all of them without fast sampling."""
    assert [FreeInit(3, fast_sampling=True).steps(25, i) for i in range(3)] == [8, 16, 25]
    assert [FreeInit(3, fast_sampling=True).steps(2, i) for i in range(3)] == [1, 1, 2]
    assert [FreeInit(3).steps(25, i) for i in range(3)] == [25, 25, 25]


def test_the_loop_reruns_denoise_around_any_denoiser(capsys):
    """The loop only calls the denoiser on the whole clip: coarse-to-fine runs of 2, 4 and 6 steps, each later one
    from `reinitialize` of the run before, its fresh noise the generator's next draw; the bars name each run."""
    config = FreeInit(3, filter="gaussian", fast_sampling=True)
    scheduler = make_scheduler("ddim")
    seen = []

    def denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append((tuple(x.shape), int(t), x.clone()))
        return 0.1 * x + 0.01 * t / 1000

    generator = torch.Generator().manual_seed(0)
    start = torch.randn(1, 4, 4, 8, 8, generator=generator)
    state = generator.get_state()
    ends = []
    out = free_init_denoise(
        config, denoiser, scheduler, start, 6, generator, callback=lambda i, t, x: ends.append((i, x.clone()))
    )
    assert [s for s, _, _ in seen] == [(1, 4, 4, 8, 8)] * 12
    assert [i for i, _ in ends] == [0, 1, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5]
    assert [t for _, t, _ in seen[:2]] == [501, 1] and seen[2][1] == 751 and seen[6][1] == 831
    torch.testing.assert_close(out, ends[-1][1], rtol=0, atol=0)

    replay = torch.Generator()
    replay.set_state(state)
    low_pass = config.low_pass((4, 8, 8))
    torch.testing.assert_close(seen[2][2], reinitialize(ends[1][1], start, scheduler, low_pass, replay))
    torch.testing.assert_close(seen[6][2], reinitialize(ends[5][1], start, scheduler, low_pass, replay))
    err = capsys.readouterr().err
    assert "FreeInit 1/3" in err and "FreeInit 3/3" in err


def test_reinitialized_latents_are_at_the_noise_level_the_loop_starts_from():
    """For DDIM (initial sigma 1) and Euler (sigma ≈ 14.6) alike, the re-initialised start has the spread of the
    start noise; the low band of the earlier run's video still shows in it."""
    generator = torch.Generator().manual_seed(1)
    shape = (1, 4, 16, 32, 32)
    video = torch.randn(shape, generator=generator).cumsum(-1).cumsum(-2) / 40  # smooth, mostly low band
    for name in ("ddim", "euler"):
        scheduler = make_scheduler(name)
        scheduler.set_timesteps(10)
        sigma = float(scheduler.init_noise_sigma)
        noise = torch.randn(shape, generator=generator)
        config = FreeInit(spatial_stop=0.5, temporal_stop=0.5)
        start = reinitialize(video, noise, scheduler, config.low_pass(shape[2:]), generator)
        assert start.std().item() == pytest.approx(sigma, rel=0.05), name
        diffused = scheduler.add_noise(video, noise, torch.tensor([999]))
        low = mix_frequencies(diffused, torch.zeros(shape), config.low_pass(shape[2:]))
        assert _gain(start, low) == pytest.approx(1.0, abs=0.05), name


def test_free_init_must_be_a_free_init():
    with pytest.raises(InputError, match="free_init must be a FreeInit"):
        free_init_denoise(3, lambda x, t: x, make_scheduler("ddim"), torch.zeros(1, 4, 2, 4, 4), 2)
