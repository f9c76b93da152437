"""Control images computed from a video, for ControlNets trained on such images ("annotators", ControlNet's
preprocessors: github.com/lllyasviel/ControlNet, `annotator/`).

`canny`: Canny edges (Canny, "A Computational Approach to Edge Detection", TPAMI 1986) with OpenCV's `cv2.Canny`
on each RGB frame as ControlNet's own Canny annotator runs it (thresholds 100 and 200, its defaults), white edges on
black in all three channels, for control_v11p_sd15_canny. OpenCV is optional (`pip install 'animatediff[control]'`).
`lineart`: ControlNet's model-free line art (controlnet_aux's `lineart_standard`, for control_v11p_sd15_lineart): how
much darker each pixel is than its surroundings (a Gaussian blur of σ 6 minus the pixel, the least over the
channels), scaled so that the median of the lines above 8 (of 255) becomes 127 (dividing by at least 16): white
lines on black. `color`: the colour grid of the T2I colour adapter (t2iadapter_color_sd14v1; A1111's
`t2ia_color_grid`): each frame shrunk 64× (bicubic) and blown back up in blocks (nearest). Both with OpenCV, on the
frames at the output's size.
`inpaint`: ControlNet inpaint's condition (control_v11p_sd15_inpaint, as diffusers' examples make it): the frames with
every pixel where the video mask is white set to -1, the mark the ControlNet was trained to fill; it needs the video
mask (`annotate(..., mask=)`), and the control video is the video being inpainted.
`none` passes the frames through: control images made beforehand (pose skeletons, depth maps, edges).

Annotators that need models of their own (OpenPose, depth, the learned line art) are not here: run them elsewhere
and give their images as a video or a folder of frames with `none`.
"""

from __future__ import annotations

import numpy as np

from animatediff.errors import InputError
from animatediff.extras import require

ANNOTATORS = ("canny", "lineart", "color", "inpaint", "none")
MASKED = -1.0
"""What ControlNet inpaint's condition holds where the mask is white (its control images are otherwise in [0, 1])."""
CANNY_THRESHOLDS = (100, 200)
"""ControlNet's Canny annotator's (and diffusers' docs') low and high hysteresis thresholds, on 0-255 gradients."""


def check_annotator(name: str, option: str = "annotator") -> None:
    """A known annotator, with what it needs installed (OpenCV for canny): checked before any model loads."""
    if name not in ANNOTATORS:
        raise InputError(f"{option} {name!r}: choose one of {', '.join(ANNOTATORS)}")
    if name not in ("none", "inpaint"):
        require("cv2", f"{option} {name} (with OpenCV)")


def canny(frames: np.ndarray, low: int = CANNY_THRESHOLDS[0], high: int = CANNY_THRESHOLDS[1]) -> np.ndarray:
    """Canny edges of frames (f, H, W, 3) in [0, 1]: float32 (f, H, W, 3), 1 on edges and 0 elsewhere."""
    require("cv2", "Canny control images")
    import cv2

    if not 0 <= low <= high:
        raise InputError(f"Canny thresholds {low} and {high}: need 0 ≤ low ≤ high")
    edges = np.stack([cv2.Canny(np.ascontiguousarray(frame), low, high) for frame in _pixels(frames)])
    return np.repeat(edges[..., None], 3, axis=-1).astype(np.float32) / 255.0


def lineart(frames: np.ndarray, sigma: float = 6.0, threshold: float = 8.0) -> np.ndarray:
    """Model-free line art of frames (f, H, W, 3) in [0, 1] (module docstring): float32 (f, H, W, 3), white lines on
    black in all three channels."""
    require("cv2", "line art control images")
    import cv2

    lines = []
    for frame in _pixels(frames).astype(np.float32):
        darker = np.clip(np.min(cv2.GaussianBlur(frame, (0, 0), sigma) - frame, axis=2), 0, 255)
        strong = darker[darker > threshold]
        darker = darker / max(16.0, float(np.median(strong)) if strong.size else 16.0) * 127
        lines.append(np.clip(darker, 0, 255).astype(np.uint8))
    return np.repeat(np.stack(lines)[..., None], 3, axis=-1).astype(np.float32) / 255.0


def colour_grid(frames: np.ndarray, block: int = 64) -> np.ndarray:
    """Frames (f, H, W, 3) in [0, 1] shrunk `block`× (bicubic, at least one pixel a side) and blown back up in
    blocks (nearest): the T2I colour adapter's control images."""
    require("cv2", "colour grid control images")
    import cv2

    grids = []
    for frame in _pixels(frames):
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_CUBIC)
        grids.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST))
    return np.stack(grids).astype(np.float32) / 255.0


def _pixels(frames: np.ndarray) -> np.ndarray:
    """Frames in [0, 1] as the uint8 images the annotators were made for."""
    return np.ascontiguousarray((np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8))


def inpaint_condition(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Frames (f, H, W, 3) in [0, 1] with every pixel where `mask` (f, H, W) is white (≥ 0.5) set to `MASKED`."""
    if mask.shape != frames.shape[:3]:
        raise InputError(f"inpaint: a mask of {mask.shape} (frames, height, width) for frames of {frames.shape[:3]}")
    return np.where((mask >= 0.5)[..., None], np.float32(MASKED), frames).astype(np.float32)


def annotate(frames: np.ndarray, annotator: str, mask: np.ndarray | None = None) -> np.ndarray:
    """The control images `annotator` makes of frames (f, H, W, 3) in [0, 1]; `mask` (f, H, W): the video mask, which
    `inpaint` needs."""
    check_annotator(annotator)
    if annotator == "inpaint":
        if mask is None:
            raise InputError("annotator inpaint blanks the video mask's white area: give the video mask (--video-mask)")
        return inpaint_condition(frames, mask)
    made = {"canny": canny, "lineart": lineart, "color": colour_grid}
    return made[annotator](frames) if annotator in made else frames


__all__ = [
    "ANNOTATORS",
    "MASKED",
    "annotate",
    "canny",
    "check_annotator",
    "colour_grid",
    "inpaint_condition",
    "lineart",
]
