"""Regional prompts: parts of the frame drawn with their own text, each where its mask is white
(animatediff-cli-prompt-travel's `region_map`, A1111's regional prompting with masks).

The call's own prompt is the background. Each `Region` has a prompt (one text, or {frame: text} travelling as the
call's prompt travel does) and a mask: one image for every frame, a folder of images named by their frame, an array,
or {frame: image}. A frame without a mask of its own keeps the last one before it; frames before the first have none.
A region may have its own image prompt (`ip_image`, prompt-travel's region `ip_adapter_map`) for the call's
IP-Adapter; a region without one, and the background, take the call's.

A mask is fitted as prompt-travel fits it (`pipeline/masks.py`): in grey, resized to the output's size (Lanczos),
white where it is at least half white, then taken to the latent size by nearest neighbour. Regions are painted over
the background in order, a later region over an earlier one where they overlap, so every latent pixel of every frame
belongs to exactly one text.

With a video start, a region whose prompt is None keeps the input video where it is painted, and `keep_background`
keeps it where no region is (prompt-travel's `is_init_img`): `pipeline/video_mask.py` puts the video back there after
every step.

Each text's guided prediction (the whole frame, with the call's negative prompt, ControlNets, IP-Adapter, windows)
is computed and the predictions are put together by those pixels. prompt-travel steps each region's latents and pastes
the latents together; for a scheduler whose step is linear in the prediction (DDIM, Euler, DPM-Solver and the other
deterministic ones) that is the same thing, and so is every multistep history, since the masks stay put. A region
costs one more guided prediction per step (both halves of the guidance batch); a region whose mask is empty in
every frame costs nothing. Where only their texts and image prompts tell the parts apart (no ControlNet confined
to some regions, keyframe ControlNet, reference, region LoRA, PAG or guidance rescale: `shares_unconditional`), their
unconditional predictions are all the same one (an IP-Adapter's negative images are the same for any images; a
ControlNet or SparseCtrl acting everywhere steers each the same): it is made once, and each part adds only its
conditional prediction (1 + parts UNet passes a step in place of 2 × parts), put together as the same sum
Σ wᵢ·(ε_u + s·(εᵢ − ε_u)).

On the gradual latent hires fix's smaller latents the weights are resized to them, bicubic
(`sampling.gradual_latent.weights_at`). prompt-travel resizes each mask so and pastes in order; where regions do not
overlap the two are the same (the weights are then sums of masks, and resizing is linear).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from animatediff.errors import InputError
from animatediff.pipeline.ip_adapter import ImageInput, IPAdapter, check_ip_adapters, ip_adapters
from animatediff.pipeline.ip_call import IPAdapterCall, ip_adapter_call
from animatediff.pipeline.masks import MaskSource, fitted_masks, mask_frames
from animatediff.pipeline.prompt_travel import keyframes
from animatediff.pipeline.text import CallText, TextConditioning
from animatediff.sampling import Denoiser
from animatediff.sampling.gradual_latent import weights_at

if TYPE_CHECKING:
    from animatediff.pipeline.animation import AnimationPipeline


@dataclass(frozen=True)
class Region:
    """A part of the frame drawn with its own `prompt` (a text, or {frame: text} for prompt travel; None: the input
    video kept there), where `mask` is white (see the module docstring for the forms a mask takes)."""

    prompt: str | dict[int, str] | None
    mask: MaskSource
    ip_image: ImageInput | Sequence[ImageInput] | Mapping[int, ImageInput | Sequence[ImageInput]] | None = None
    """This region's image prompt in place of the call's, with the call's IP-Adapter (its weights and scale): an
    image, several seen together, or {frame: image(s)} keyframes (`pipeline/ip_adapter.py`); None: the call's."""


def read_regions(
    regions: Sequence[Region], read: Callable[[tuple], CallText], texts: tuple, num_frames: int, videos: int,
    prompt_editing: bool, video: bool = False, keep_background: bool = False,
) -> list[CallText | None]:  # fmt: skip
    """Each region's text read as the call's (`read`: `read_call_text`) with the call's negative prompts (`texts`:
    its prompt, negative prompt, prompt_2 and negative prompt_2), None for a region keeping the video; after
    `check_regions`."""
    check_regions(regions, num_frames, videos, prompt_editing, video, keep_background)
    negative_prompt, negative_prompt_2 = texts[1], texts[3]
    calls: list[CallText | None] = []
    for region in regions:
        prompt = region.prompt
        if prompt is None:
            calls.append(None)
            continue
        if isinstance(negative_prompt, Mapping) and isinstance(prompt, str):
            prompt = {0: prompt}  # a travelling negative prompt needs the prompt per frame too
        calls.append(read((prompt, negative_prompt, None, negative_prompt_2)))
    return calls


def check_regions(
    regions: Sequence[Region], num_frames: int, videos: int = 1, prompt_editing: bool = False, video: bool = False,
    keep_background: bool = False,
) -> None:  # fmt: skip
    """One line for what a call's regions cannot draw: prompts that are not text or keyframes, masks that are not
    found or not images, a batch of videos, prompt editing, a video kept without a `video` start, nothing drawn."""
    if keep_background and not regions:
        raise InputError("keep_background keeps the video outside the regions: give regions")
    if not regions:
        return
    if (keep_background or any(r.prompt is None for r in regions)) and not video:
        raise InputError("a region keeping the video (no prompt, or keep_background) needs a video to keep")
    if keep_background and all(r.prompt is None for r in regions):
        raise InputError("keep_background with only regions keeping the video draws nothing; give a region a prompt")
    if videos != 1:
        raise InputError(f"regions draw one video per call, got {videos} prompts; give one prompt")
    if prompt_editing:
        raise InputError("regions are drawn without prompt editing; turn prompt_editing off")
    for i, region in enumerate(regions):
        what = f"region {i}"
        if isinstance(region.prompt, Mapping):
            keyframes(region.prompt, f"{what} prompt")
        elif region.prompt is not None and not isinstance(region.prompt, str):
            raise InputError(f"{what}: the prompt must be a string or {{frame: prompt}}, got {region.prompt!r}")
        if region.prompt is None and region.ip_image is not None:
            raise InputError(f"{what}: a region keeping the video draws nothing to give an image prompt; drop ip_image")
        mask_frames(region.mask, num_frames, what)


def region_image_prompts(
    regions: Sequence[Region], ip_adapter: IPAdapter | Sequence[IPAdapter] | None, num_frames: int
) -> list[IPAdapter | None]:
    """Each region's own image prompt as an `IPAdapter` (the call's, with the region's images), None for a region
    without; one line for a region's images without the call's one IP-Adapter, or keyframes past the clip."""
    adapters: list[IPAdapter | None] = []
    call = ip_adapters(ip_adapter)
    for i, region in enumerate(regions):
        if region.ip_image is None:
            adapters.append(None)
            continue
        if len(call) != 1:
            raise InputError(
                f"region {i}: its image prompt is drawn with the call's IP-Adapter; give one (ip_adapter="
                f"IPAdapter(...)), not {len(call)}"
            )
        adapter = replace(call[0], image=region.ip_image)
        check_ip_adapters(adapter, num_frames)
        adapters.append(adapter)
    return adapters


def region_ip_calls(
    pipe: AnimationPipeline, adapters: Sequence[IPAdapter | None], guided: bool, num_frames: int, interpolation: str,
    loop: bool, size: tuple[int, int],
) -> list[IPAdapterCall | None]:  # fmt: skip
    """The regions' own image prompts (`region_image_prompts`) encoded for one call of `pipe`, as the call's is."""
    travel = (num_frames, interpolation, loop)
    return [None if a is None else ip_adapter_call(pipe, a, guided, *travel, size) for a in adapters]


def region_weights(
    regions: Sequence[Region], num_frames: int, height: int, width: int, latent: tuple[int, int]
) -> torch.Tensor | None:
    """(1 + regions, frames, h, w): where the background (the call's prompt, first) and each region are drawn at the
    latent size `latent`, each region painted over those before it, so they sum to one at every pixel; None without
    regions."""
    if not regions:
        return None
    masks = region_masks(regions, num_frames, height, width, tuple(latent))
    weights = [torch.ones(masks.shape[1:])]
    for mask in masks:
        weights = [w * (1 - mask) for w in weights] + [mask]
    return torch.stack(weights)


def region_masks(
    regions: Sequence[Region], num_frames: int, height: int, width: int, latent: tuple[int, int]
) -> torch.Tensor:
    """(regions, frames, h, w) binary masks at the latent size, each frame's the last keyframe's at or before it."""
    return torch.stack([fitted_masks(r.mask, num_frames, height, width, latent, f"region {i}") for i, r in
                        enumerate(regions)])  # fmt: skip


def kept_weight(regions: Sequence[Region], keep_background: bool, weights: torch.Tensor | None) -> torch.Tensor | None:
    """(frames, h, w): where the regions keeping the video (and the background, with `keep_background`) are painted;
    None where none is."""
    kept = [keep_background, *(r.prompt is None for r in regions)]
    if weights is None or not any(kept):
        return None
    return weights[torch.tensor(kept)].sum(0)


def shares_unconditional(guidance_rescale: float, *per_part: object) -> bool:
    """Whether regions (or AND parts) guided at a scale above 1 can share one unconditional prediction: rescaled by
    none, and with nothing in `per_part` (ControlNets confined to some parts or not split into the guidance's halves,
    a reference, region LoRAs, PAG, a call's own conditions, IP-Adapter images guided from different negatives) that
    a part's unconditional prediction could differ by."""
    return guidance_rescale == 0.0 and not any(per_part)


def regional(
    make: Callable[[TextConditioning, int], Denoiser], text: TextConditioning | None,
    regions: Sequence[TextConditioning | None], weights: torch.Tensor | None,
    plain: Callable[..., Denoiser] | None = None, guidance_scale: float = 1.0,
) -> Denoiser:  # fmt: skip
    """The denoiser `make(text, part)` builds for the call's `text` (part 0), or with regions, the sum of each text's
    prediction (`text` first, then the regions', parts 1, 2, …) weighted by `region_weights`; a text drawn nowhere is
    not run, and nor is one that is None (the video kept there: what is predicted there is put back after the step).

    `plain(text, part, negative=False)`: the part's unguided prediction of `text.cond` (with `negative`, of the
    negative half of what else guides it: the IP-Adapter's negative images), given when the parts share one
    unconditional prediction (`shares_unconditional`): then ε_u is made once and the guided sum taken from it."""
    if not regions:
        return make(text, 0)
    texts = (text, *regions)
    drawn = [(w, t, i) for i, (w, t) in enumerate(zip(weights, texts, strict=True)) if t is not None and w.any()]
    stacked = torch.stack([w for w, _, _ in drawn])
    if plain is not None and len(drawn) > 1:  # one part alone: its guided batch, the same two passes
        return _shared_unconditional(plain, drawn, stacked, guidance_scale)
    parts = [make(t, i) for _, t, i in drawn]

    def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sized = weights_at(stacked, tuple(x.shape[-2:]))  # resized for the gradual latent hires fix's smaller x
        out = [weight.to(x.device, x.dtype) * part(x, t) for weight, part in zip(sized, parts, strict=True)]
        return torch.stack(out).sum(0) if len(out) > 1 else out[0]

    return predict


def _shared_unconditional(
    plain: Callable[..., Denoiser], drawn: list[tuple[torch.Tensor, TextConditioning, int]],
    stacked: torch.Tensor, scale: float,
) -> Denoiser:  # fmt: skip
    """Σᵢ wᵢ·(ε_u + s·(εᵢ − ε_u)) as (1 − s)·(Σᵢ wᵢ)·ε_u + s·Σᵢ wᵢ·εᵢ, with ε_u made once (from the first part's
    negative text) and each εᵢ alone; a part whose text is the negative one (an AND composition's unconditional
    part) is ε_u itself."""
    unconditional = plain(TextConditioning(drawn[0][1].uncond, None, drawn[0][1].pooled_uncond), 0, negative=True)
    parts = [None if t.cond is t.uncond else plain(t, i) for _, t, i in drawn]

    def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sized = weights_at(stacked, tuple(x.shape[-2:])).to(x.device, x.dtype)
        eps_uncond = unconditional(x, t)
        mixed = sum(w * (eps_uncond if part is None else part(x, t)) for w, part in zip(sized, parts, strict=True))
        return (1 - scale) * sized.sum(0) * eps_uncond + scale * mixed

    return predict
