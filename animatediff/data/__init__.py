"""Video-caption data for training: decoding with seeking, clip sampling, datasets (WebVid CSV, captioned folder,
tar shards) and shard preparation. Knows nothing of models."""

from animatediff.data.clips import ClipConfig, clip_indices, item_rng, load_clip, transform_clip
from animatediff.data.datasets import (
    SKIP_REASONS,
    VideoClipDataset,
    VideoFolderDataset,
    WebVidDataset,
    list_video_folder,
    open_dataset,
    read_webvid_csv,
)
from animatediff.data.prepare import PrepareReport, prepare_shards
from animatediff.data.shard_index import ShardWriter, find_shards
from animatediff.data.shards import ShardDataset
from animatediff.data.tar_members import iter_tar_samples
from animatediff.data.video_reader import VideoInfo, VideoReader, VideoReadError, read_video_frames

__all__ = [
    "SKIP_REASONS",
    "ClipConfig",
    "PrepareReport",
    "ShardDataset",
    "ShardWriter",
    "VideoClipDataset",
    "VideoFolderDataset",
    "VideoInfo",
    "VideoReadError",
    "VideoReader",
    "WebVidDataset",
    "clip_indices",
    "find_shards",
    "item_rng",
    "iter_tar_samples",
    "list_video_folder",
    "load_clip",
    "open_dataset",
    "prepare_shards",
    "read_video_frames",
    "read_webvid_csv",
    "transform_clip",
]
