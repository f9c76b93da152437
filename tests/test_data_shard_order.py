"""The order of a rank's clips from tar shards depends on the seed, epoch, rank and batch size, never on the number
of DataLoader workers: the same clips in the same batches with 0, 1, 2 or 3 workers, bad samples included, and a
run resumed mid-epoch with another number of workers goes on exactly."""

import pytest
import torch
from torch.utils.data import DataLoader

from animatediff.data import ClipConfig, ShardDataset, ShardWriter
from animatediff.data.synthetic import write_corrupt_video, write_synthetic_video

CLIP = ClipConfig(num_frames=4, stride=2, size=16)
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 3 workers on 2 cores


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """40 samples in 8 shards of 5 (two ranks get four shards each): clip 7 corrupt, clip 12 without a caption."""
    root = tmp_path_factory.mktemp("order")
    good = write_synthetic_video(root / "good.mp4", num_frames=24).read_bytes()
    bad = write_corrupt_video(root / "bad.mp4").read_bytes()
    with ShardWriter(root / "shards", shard_size=5) as writer:
        for i in range(40):
            members = {"mp4": bad if i == 7 else good}
            if i != 12:
                members["txt"] = f"clip {i}".encode()
            writer.write(f"s{i:04d}", members)
    return root / "shards"


def batches(shards, workers, start_batch=0, batch_size=2, rank=0):
    dataset = ShardDataset(shards, CLIP, seed=3, rank=rank, world_size=2, shuffle_buffer=8)
    dataset.set_position(0, start_batch * batch_size, batch_size)
    return list(DataLoader(dataset, batch_size=batch_size, num_workers=workers)), dataset


def same(a, b):
    return [x["text"] for x in a] == [y["text"] for y in b] and all(
        torch.equal(x["pixel_values"], y["pixel_values"]) for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("rank", [0, 1])
def test_the_same_batches_whatever_the_number_of_workers(shards, rank):
    reference, dataset = batches(shards, 0, rank=rank)
    assert len(reference) == 10 and sum(dataset.skipped.values()) == 1  # clip 7 or clip 12, whichever is ours
    for workers in (1, 2, 3):
        got, other = batches(shards, workers, rank=rank)
        assert same(got, reference), workers
        assert other.skipped == dataset.skipped


def test_resuming_with_another_number_of_workers_goes_on_exactly(shards):
    both = [batches(shards, 0, rank=rank)[0] for rank in (0, 1)]
    everything = [t for reference in both for batch in reference for t in batch["text"]]
    # Clip 12 is left out; clip 7's place holds a replacement, a second copy of another clip of its rank.
    assert len(everything) == 39 and len(set(everything)) == 38 and not {"clip 7", "clip 12"} & set(everything)
    for rank, reference in enumerate(both):
        for before, after, stop in ((1, 2, 3), (2, 0, 5), (3, 2, 4), (0, 3, 7)):
            assert same(batches(shards, before, rank=rank)[0][:stop], reference[:stop])
            assert same(batches(shards, after, start_batch=stop, rank=rank)[0], reference[stop:]), (before, after)
