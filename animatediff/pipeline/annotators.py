"""Control images computed from a video, for ControlNets trained on such images ("annotators", ControlNet's
preprocessors: github.com/lllyasviel/ControlNet, `annotator/`).

`canny`: Canny edges (Canny, "A Computational Approach to Edge Detection", TPAMI 1986) with OpenCV's `cv2.Canny`
on each RGB frame as ControlNet's own Canny annotator runs it (thresholds 100 and 200, its defaults), white edges on
black in all three channels, for control_v11p_sd15_canny. OpenCV is optional (`pip install 'animatediff[control]'`).
`none` passes the frames through: control images made beforehand (pose skeletons, depth maps, edges).

Heavier annotators (OpenPose, depth, line art) need models of their own and are not here yet: run them elsewhere
and give their images as a video or a folder of frames with `none`.
"""

from __future__ import annotations

import numpy as np

from animatediff.errors import InputError
from animatediff.extras import require

ANNOTATORS = ("canny", "none")
CANNY_THRESHOLDS = (100, 200)
"""ControlNet's Canny annotator's (and diffusers' docs') low and high hysteresis thresholds, on 0-255 gradients."""


def check_annotator(name: str, option: str = "annotator") -> None:
    """A known annotator, with what it needs installed (OpenCV for canny): checked before any model loads."""
    if name not in ANNOTATORS:
        raise InputError(f"{option} {name!r}: choose one of {', '.join(ANNOTATORS)}")
    if name == "canny":
        require("cv2", f"{option} canny (Canny edges with OpenCV)")


def canny(frames: np.ndarray, low: int = CANNY_THRESHOLDS[0], high: int = CANNY_THRESHOLDS[1]) -> np.ndarray:
    """Canny edges of frames (f, H, W, 3) in [0, 1]: float32 (f, H, W, 3), 1 on edges and 0 elsewhere."""
    require("cv2", "Canny control images")
    import cv2

    if not 0 <= low <= high:
        raise InputError(f"Canny thresholds {low} and {high}: need 0 ≤ low ≤ high")
    pixels = (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)
    edges = np.stack([cv2.Canny(np.ascontiguousarray(frame), low, high) for frame in pixels])
    return np.repeat(edges[..., None], 3, axis=-1).astype(np.float32) / 255.0


def annotate(frames: np.ndarray, annotator: str) -> np.ndarray:
    """The control images `annotator` makes of frames (f, H, W, 3) in [0, 1]."""
    check_annotator(annotator)
    return canny(frames) if annotator == "canny" else frames


__all__ = ["ANNOTATORS", "annotate", "canny", "check_annotator"]
