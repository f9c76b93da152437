"""Training-free video baselines to compare the motion module against."""

from animatediff.baselines.text2video_zero import (
    CrossFrameAttnProcessor,
    cross_frame_attention,
    direction_from_prompt,
    text2video_zero,
)

__all__ = ["CrossFrameAttnProcessor", "cross_frame_attention", "direction_from_prompt", "text2video_zero"]
