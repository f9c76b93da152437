"""A ControlNet steering a clip from control images at some frames only, as animatediff-cli-prompt-travel's
`controlnet_map` applies them (github.com/s9roll7/animatediff-cli-prompt-travel).

At every step each keyframe's residuals are computed from the keyframe's own latents, text and control image (the
whole guided batch, the negative prompt's half too). A frame receives the residuals of each keyframe within
`len(spread)` frames of it: its own keyframe's at 1, those d frames away at `spread[d - 1]`; with `loop` the
distances wrap around the clip's ends (`spread_weights`). Different keyframes' contributions add up, unnormalized:
with an image on every frame and a non-empty `spread` every frame gets its own residuals and its neighbours'. With
an image on every frame and no
`spread` it is an ordinary ControlNet (`pipeline.controlnet.ControlNet`) except in guess mode, which here is the
model's own residual scaling only (the negative prompt's half keeps its residuals, as prompt-travel does).

Keyframes outside a context window still reach its frames: the condition sees the whole clip's latents before the
windows are cut (`seeing_clip`), and computes the residuals of the keyframes a window needs, keeping them for the
next window while it needs them too.

On an SDXL base each keyframe's residuals take its video's pooled text and the size ids (`sdxl.with_sdxl`), as a
plain ControlNet's do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from einops import rearrange

from animatediff.errors import InputError
from animatediff.pipeline.control_inputs import check_control_range
from animatediff.pipeline.controlnet import active_steps, control_frames_tensor, control_regions, sized_control
from animatediff.pipeline.keyframe_control_inputs import spread_numbers
from animatediff.sampling.context import step_index

if TYPE_CHECKING:
    from animatediff.pipeline.sdxl import SDXLConditioning
    from animatediff.sampling import Predictor


@dataclass
class KeyframeControlNet:
    """One ControlNet with control images at keyframes (prompt-travel's names in brackets)."""

    model: torch.nn.Module
    """A diffusers `ControlNetModel` for the base."""
    keyframes: Mapping[int, torch.Tensor | np.ndarray]
    """{frame: control image} at the output size: (3, H, W) tensors or (H, W, 3) arrays, floats in [0, 1] or uint8.
    Frames past the clip's last are not used."""
    scale: float = 1.0
    """How much of its residuals the UNet gets (`controlnet_conditioning_scale`)."""
    start: float = 0.0
    """The fraction of the steps after which it starts acting (`control_guidance_start`)."""
    end: float = 1.0
    """The fraction of the steps after which it stops (`control_guidance_end`)."""
    guess_mode: bool = False
    """The model's guess-mode residual scaling (`guess_mode`)."""
    spread: Sequence[float] = field(default_factory=tuple)
    """The scales of a keyframe's residuals 1, 2, … frames away from it (`control_scale_list`)."""
    loop: bool = True
    """Distances wrap around the clip's ends (`is_loop`)."""
    regions: Sequence[int | str] = ()
    """Where it acts with regional prompts (`control_region_list`): as `ControlNet.regions`."""

    def __post_init__(self) -> None:
        check_control_range(self.start, self.end, self.scale)
        self.regions = control_regions(self.regions)
        if not isinstance(self.guess_mode, bool) or not isinstance(self.loop, bool):
            raise InputError("keyframe ControlNet guess_mode and loop must be True or False")
        if not spread_numbers(self.spread):
            raise InputError(f"keyframe ControlNet spread must be a list of numbers, got {list(self.spread)!r}")
        if not isinstance(self.model, torch.nn.Module):
            raise InputError(
                f"keyframe ControlNet model must be a diffusers ControlNetModel, got {type(self.model).__name__}"
            )
        if not self.keyframes:
            raise InputError("keyframe ControlNet: no keyframe images")
        images = {}
        for frame, image in sorted(self.keyframes.items()):
            if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
                raise InputError(f"keyframe ControlNet: frame {frame!r} is not a frame index from 0")
            batch = image[None] if isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim == 3 else image
            images[frame] = control_frames_tensor(batch)[0]
        self.keyframes = images
        self.spread = tuple(float(s) for s in self.spread)


def spread_weights(keyframes: Sequence[int], frames: Sequence[int], spread: Sequence[float], num_frames: int,
                   loop: bool) -> torch.Tensor:  # fmt: skip
    """(len(frames), len(keyframes)): how much of each keyframe's residuals each of `frames` receives: 1 at the
    keyframe, `spread[d - 1]` d frames away, offsets past the clip's ends dropped unless `loop`. As prompt-travel
    does, the offsets are gone through from −len(spread) up and a frame a keyframe reaches twice (a wrapped clip
    shorter than 2·len(spread) + 1 frames) keeps the first (prompt-travel also cuts the spread at its context
    length, 16 by default; it is not cut here)."""
    row = {frame: i for i, frame in enumerate(frames)}
    weights = torch.zeros(len(frames), len(keyframes))
    scales = [*reversed(spread), 1.0, *spread]
    reach = len(spread)
    for j, key in enumerate(keyframes):
        reached = set()
        for offset, scale in zip(range(-reach, reach + 1), scales, strict=True):
            frame = key + offset
            if loop:
                frame %= num_frames
            elif not 0 <= frame < num_frames:
                continue
            if frame in row and frame not in reached:
                weights[row[frame], j] = scale
            reached.add(frame)
    return weights


class KeyframeControlNetCondition:
    """A `Condition`: one `KeyframeControlNet` bound to a run; wrap the predictor that context windows cut with
    `seeing_clip` so that it sees each prediction's whole clip."""

    def __init__(
        self, control: KeyframeControlNet, timesteps: torch.Tensor, num_frames: int, device: torch.device,
        factor: int | None = None,
    ) -> None:  # fmt: skip
        """`factor`: the VAE's, pixels per latent, by which `controlnet.sized_control` fits the images to latents of
        another size (None: never)."""
        self.model, self.factor = control.model, factor
        self.scale, self.guess_mode = float(control.scale), control.guess_mode
        self.spread, self.loop, self.num_frames = control.spread, control.loop, num_frames
        dtype = getattr(self.model, "dtype", torch.float32)
        kept = {k: v for k, v in control.keyframes.items() if k < num_frames}
        self.keys = list(kept)
        self.images = torch.stack(list(kept.values())).to(device=device, dtype=dtype) if kept else None
        self.step_of = step_index(timesteps)
        self.active = active_steps(len(timesteps), control.start, control.end)
        self._clip: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._residuals: dict[int, tuple[list[torch.Tensor], torch.Tensor]] = {}
        self.sdxl: SDXLConditioning | None = None
        """SDXL: the pooled text and size ids of the text it is bound to (`sdxl.with_sdxl`), for its added
        embeddings."""

    def seeing_clip(self, predict: Predictor) -> Predictor:
        """`predict`, with the whole clip's latents, timestep and text kept for this condition during each call."""

        def predict_seen(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
            self._clip, self._residuals = (x, t, text), {}
            try:
                return predict(x, t, text, frames)
            finally:
                self._clip, self._residuals = None, {}

        return predict_seen

    def _keyframe_residuals(self, needed: list[int]) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
        """Each needed keyframe's residuals (down list, mid), each (b, ...): kept while the windows that follow need
        them (within one prediction), so that device memory holds one window's keyframes, not the clip's."""
        self._residuals = {j: kept for j, kept in self._residuals.items() if j in needed}
        missing = [j for j in needed if j not in self._residuals]
        if missing:
            if self._clip is None:
                raise RuntimeError("a keyframe ControlNet's predictor must be wrapped by its seeing_clip")
            x, t, text = self._clip
            dtype = self.images.dtype
            frames = torch.tensor([self.keys[j] for j in missing], device=x.device)
            sample = rearrange(x[:, :, frames], "b c k h w -> (k b) c h w").to(dtype)
            context = text[:, frames] if text.ndim == 4 else text[None].expand(len(missing), *text.shape)
            context = context.transpose(0, 1) if text.ndim == 4 else context
            context = rearrange(context, "k b n d -> (k b) n d").to(dtype)
            cond = sized_control(self.images[missing], x, self.factor).repeat_interleave(x.shape[0], dim=0)
            down, mid = self.model(
                sample, t, encoder_hidden_states=context, controlnet_cond=cond, conditioning_scale=self.scale,
                guess_mode=self.guess_mode, added_cond_kwargs=self._added(x, t, text, frames), return_dict=False,
            )  # fmt: skip
            for i, j in enumerate(missing):
                own = slice(i * x.shape[0], (i + 1) * x.shape[0])
                self._residuals[j] = ([d[own].to(x.dtype) for d in down], mid[own].to(x.dtype))
        return [self._residuals[j] for j in needed]

    def _added(
        self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor
    ) -> dict[str, torch.Tensor] | None:
        """SDXL's added embeddings for the keyframes' `frames` of the clip x, in the (keyframe, video) order of the
        ControlNet's batch; None for SD1.x."""
        if self.sdxl is None:
            return None
        added = self.sdxl.unet_kwargs(x[:, :, frames], t, text, frames)["added_cond_kwargs"]  # (video, keyframe)
        return {k: rearrange(v, "(b k) p -> (k b) p", b=x.shape[0]) for k, v in added.items()}

    def unet_kwargs(
        self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor
    ) -> dict[str, object]:
        """The residuals the clip's `frames` (held by x) receive, folded as the UNet folds them ((b·f), ...);
        nothing at a step it does not act in or where no keyframe reaches."""
        if self.images is None or self.scale == 0 or not self.active[self.step_of(t)]:
            return {}
        weights = spread_weights(self.keys, frames.tolist(), self.spread, self.num_frames, self.loop)
        needed = [j for j in range(len(self.keys)) if weights[:, j].any()]
        if not needed:
            return {}
        parts = self._keyframe_residuals(needed)
        weights = weights[:, needed].to(x.device, x.dtype)

        def spread(tensors: list[torch.Tensor]) -> torch.Tensor:  # (k, b, ...) → ((b f), ...)
            mixed = torch.einsum("fk,kb...->bf...", weights, torch.stack(tensors))
            return mixed.flatten(0, 1)

        down = tuple(spread([p[0][i] for p in parts]) for i in range(len(parts[0][0])))
        return {"down_block_additional_residuals": down, "mid_block_additional_residual": spread([p[1] for p in parts])}


def seeing_clip(predict: Predictor, conditions: Sequence[object]) -> Predictor:
    """`predict` wrapped by every condition that needs to see the whole clip (`KeyframeControlNetCondition`)."""
    for condition in conditions:
        if isinstance(condition, KeyframeControlNetCondition):
            predict = condition.seeing_clip(predict)
    return predict


__all__ = ["KeyframeControlNet", "KeyframeControlNetCondition", "seeing_clip", "spread_weights"]
