"""BatchLoader on real images: evaluation order and normalisation, determinism in (seed, epoch), distributed shards
that add up to the single-process batch (augmentation included), batch augmentation, sizes, dtypes, devices."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import Split
from cnnlab.data.loader import BatchLoader
from cnnlab.errors import CnnlabError
from test_data_common import jpeg_members

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
AUG = ["crop", "flip", {"name": "cutout", "size": 8}]


@pytest.fixture(scope="module")
def split(shared_data):
    """60 real labelled CIFAR images (3 classes x 20) in class order."""
    files = sorted(jpeg_members(shared_data, per_class=20).items())
    x = np.stack([np.asarray(Image.open(io.BytesIO(b))) for _, b in files])
    y = [("airplane", "automobile", "bird").index(k.split("/")[1]) for k, _ in files]
    return Split(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.tensor(y), [k for k, _ in files])


def collect(loader):
    xs, ys = zip(*list(loader))
    return torch.cat(xs), torch.cat(ys) if ys[0] is not None else None


def test_evaluation_batches_are_in_order_and_normalised(split):
    loader = BatchLoader(split, 16, mean=MEAN, std=STD)
    assert len(loader) == 4 and loader.num_samples == 60
    sizes = [len(x) for x, _ in loader]
    assert sizes == [16, 16, 16, 12]
    x, y = collect(loader)
    expected = (split.x.double() / 255 - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(
        STD, dtype=torch.float64).view(1, 3, 1, 1)
    assert x.dtype == torch.float32 and torch.allclose(x.double(), expected, atol=1e-5)
    assert torch.equal(y, split.y)
    plain, _ = collect(BatchLoader(split, 60))  # no mean/std: pixels scaled to [0, 1]
    assert torch.allclose(plain, split.x.float() / 255) and y.dtype == torch.int64


def test_shuffled_epoch_is_a_permutation_and_a_pure_function_of_seed_and_epoch(split):
    a = BatchLoader(split, 8, shuffle=True, augment=AUG, mean=MEAN, std=STD, seed=3)
    epochs = []
    for e in range(3):
        a.set_epoch(e)
        epochs.append(collect(a))
    for x, y in epochs:
        assert sorted(y.tolist()) == sorted(split.y.tolist())
    assert not torch.equal(epochs[0][0], epochs[1][0])
    resumed = BatchLoader(split, 8, shuffle=True, augment=AUG, mean=MEAN, std=STD, seed=3)
    resumed.set_epoch(2)  # a run resumed at epoch 2 sees exactly what the uninterrupted run saw
    x, y = collect(resumed)
    assert torch.equal(x, epochs[2][0]) and torch.equal(y, epochs[2][1])
    other = BatchLoader(split, 8, shuffle=True, augment=AUG, mean=MEAN, std=STD, seed=4)
    assert not torch.equal(collect(other)[1], epochs[0][1])


def test_every_image_once_per_epoch(split):
    loader = BatchLoader(split, 7, shuffle=True, seed=1)
    x, _ = collect(loader)
    assert len(x) == 60
    rows = {tuple(r) for r in (x * 255).round().to(torch.uint8).reshape(60, -1).tolist()}
    assert rows == {tuple(r) for r in split.x.reshape(60, -1).tolist()}


ALTERNATING = ["crop", {"name": "flip", "mode": "alternate"}, {"name": "cutout", "size": 8}]


@pytest.mark.parametrize("world, repeats, aug", [(2, 1, AUG), (3, 2, AUG), (4, 3, AUG), (3, 2, ALTERNATING)])
def test_distributed_shards_add_up_to_the_single_process_batch(split, world, repeats, aug):
    """Rank r takes positions r, r+W, ... of every global batch, with the same augmentation the single process
    gives those positions: DDP with W processes sees exactly the single-process batch."""
    per_rank = 4
    single = BatchLoader(split, per_rank * world, shuffle=True, augment=aug, repeats=repeats, mean=MEAN, std=STD,
                         seed=7, drop_last=True)
    ranks = [BatchLoader(split, per_rank, shuffle=True, augment=aug, repeats=repeats, mean=MEAN, std=STD, seed=7,
                         drop_last=True, rank=r, world_size=world) for r in range(world)]
    for ld in [single, *ranks]:
        ld.set_epoch(5)
    assert all(len(r) == len(single) for r in ranks)
    assert sum(r.num_samples for r in ranks) == single.num_samples == len(single) * per_rank * world
    for batches in zip(single, *ranks):
        (sx, sy), shards = batches[0], batches[1:]
        sx = sx.view(per_rank * world, repeats, *sx.shape[1:])
        sy = sy.view(per_rank * world, repeats)
        for r, (rx, ry) in enumerate(shards):
            assert torch.equal(rx.view(per_rank, repeats, *rx.shape[1:]), sx[r::world])
            assert torch.equal(ry.view(per_rank, repeats), sy[r::world])


def _flipped_per_slot(loader, split, epoch):
    """{(image, copy): was it mirrored} for one epoch of a flip-only loader."""
    loader.set_epoch(epoch)
    order, m, seen = loader.order(), loader.repeats, {}
    original = loader.normalise(split.x.clone())
    for b, (x, _) in enumerate(loader):
        idx = order[b * loader.batch_size:(b + 1) * loader.batch_size].repeat_interleave(m)
        for k, (img, i) in enumerate(zip(x, idx.tolist())):
            plain, mirrored = torch.equal(img, original[i]), torch.equal(img, original[i].flip(-1))
            assert plain != mirrored, "each image is either itself or its mirror image"
            seen[(i, k % m)] = mirrored
    return seen


def test_alternating_flip_shows_each_image_both_ways_every_two_epochs(split):
    loader = BatchLoader(split, 12, shuffle=True, augment=[{"name": "flip", "mode": "alternate"}], repeats=2, seed=3)
    e0, e1, e2 = (_flipped_per_slot(loader, split, e) for e in (0, 1, 2))
    assert len(e0) == 120 and set(e0) == set(e1)
    assert all(e0[k] != e1[k] for k in e0), "odd epochs flip exactly the slots the even ones left"
    assert e2 == e0, "the coins are drawn once per seed, not per epoch"
    assert 0.3 < sum(e0.values()) / len(e0) < 0.7
    assert any(e0[(i, 0)] != e0[(i, 1)] for i in range(60)), "copies of an image have coins of their own"
    other = BatchLoader(split, 12, shuffle=True, augment=[{"name": "flip", "mode": "alternate"}], repeats=2, seed=4)
    assert _flipped_per_slot(other, split, 0) != e0
    # the random flip is untouched by the slots the loader now passes: the same draws as sampling without them
    from cnnlab.data.augment import build_augmentation
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    plain = build_augmentation(["crop", "flip"])
    with_slots = plain.sample(8, g1, slots=None)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(with_slots, plain.sample(8, g2)) for k in a)


def test_batch_augmentation_repeats_each_image_with_independent_copies(split):
    loader = BatchLoader(split, 10, shuffle=True, augment=["crop", "flip"], repeats=4, seed=0)
    x, y = next(iter(loader))
    assert x.shape == (40, 3, 32, 32) and len(y) == 40
    assert torch.equal(y.view(10, 4), y.view(10, 4)[:, :1].expand(10, 4))  # copies of one image are adjacent
    copies = x.view(10, 4, -1)
    distinct = sum(len(torch.unique(copies[i], dim=0)) for i in range(10))
    assert distinct >= 35  # 81 offsets x 2 flips: copies of one image almost never coincide


def test_batch_size_may_change_between_epochs(split):
    loader = BatchLoader(split, 16, shuffle=True, drop_last=True)
    assert len(loader) == 3 and loader.num_samples == 48
    loader.batch_size = 25
    assert len(loader) == 2 and [len(x) for x, _ in loader] == [25, 25]
    loader.batch_size, loader.drop_last = 25, False
    assert len(loader) == 3 and [len(x) for x, _ in loader] == [25, 25, 10]


def test_unlabelled_split_channels_last_and_dtypes(split):
    holdout = Split(split.x[:10].clone(), None, [str(i) for i in range(10)])
    x, y = next(iter(BatchLoader(holdout, 10, channels_last=True, mean=MEAN, std=STD)))
    assert y is None and x.is_contiguous(memory_format=torch.channels_last)
    ref = next(iter(BatchLoader(holdout, 10, mean=MEAN, std=STD)))[0]
    assert torch.equal(x, ref)  # same values, other memory layout
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        h, _ = next(iter(BatchLoader(holdout, 10, mean=MEAN, std=STD, dtype=dtype, augment=AUG)))
        assert h.dtype == dtype


def test_preparation_threads_change_nothing_but_speed(split):
    """Batches are identical for any intra-op thread count, and the consumer keeps the process's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        kw = dict(shuffle=True, augment=AUG, repeats=2, mean=MEAN, std=STD, seed=1)
        ref = collect(BatchLoader(split, 8, threads=None, **kw))
        for threads in (1, 2, 3, "auto"):
            loader = BatchLoader(split, 8, threads=threads, **kw)
            xs, ys, seen = [], [], []
            for x, y in loader:
                xs.append(x)
                ys.append(y)
                seen.append(torch.get_num_threads())  # what the model sees between batches
            assert seen == [2] * len(loader)
            assert torch.equal(torch.cat(xs), ref[0]) and torch.equal(torch.cat(ys), ref[1])
        first = next(iter(BatchLoader(split, 8, threads=1, **kw)))  # leaving early restores the setting too
        assert torch.equal(first[0], ref[0][:16]) and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_auto_threads_keep_the_faster_setting_and_back_off():
    """The "auto" chooser on fed timings: multi-threaded wins on idle cores; a slow multi-threaded try ends the probe,
    and after one thread wins the next probes come 1, 2, 4 ... epochs later."""
    from cnnlab.data.loader import _ThreadChooser
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        c = _ThreadChooser("auto")
        c.start_epoch()
        for _ in range(8):  # idle cores: 2 threads take 0.6 of the single-thread time
            n = c.next()
            c.record(n, 1.0 if n == 1 else 0.6)
        assert not c.probing and c.next() == 2
        c.start_epoch()  # the multi-threaded choice is re-checked every epoch
        assert c.probing and [c.next()] == [1]
        c.record(1, 1.0)
        c.record(c.next(), 5.0)  # busy cores: one try suffices
        assert not c.probing and c.next() == 1
        probed = []
        for epoch in range(8):
            c.start_epoch()
            probed.append(c.probing)
            if c.probing:
                c.record(c.next(), 1.0)
                c.record(c.next(), 5.0)
        assert probed == [False, True, False, False, True, False, False, False]  # skips 1, then 2, then 4
        for setting, expected in ((None, None), (1, 1), (3, 3)):  # fixed settings are used as given
            fixed = _ThreadChooser(setting)
            fixed.start_epoch()
            assert fixed.next() == expected and not fixed.probing
    finally:
        torch.set_num_threads(before)


def test_bad_arguments(split):
    with pytest.raises(CnnlabError, match="argument 'batch_size' must be a whole number >= 1 .*got 0"):
        BatchLoader(split, 0)
    with pytest.raises(CnnlabError, match="rank 2 must be below world_size 2"):
        BatchLoader(split, 4, rank=2, world_size=2)
    with pytest.raises(CnnlabError, match="mean and std need 3 values"):
        BatchLoader(split, 4, mean=(0.5,), std=(0.5,))
    with pytest.raises(CnnlabError, match="std must be positive"):
        BatchLoader(split, 4, mean=MEAN, std=(0.2, 0.0, 0.2))
    with pytest.raises(CnnlabError, match="unknown augmentation"):
        BatchLoader(split, 4, augment=["rotate"])
    with pytest.raises(CnnlabError, match="argument 'threads' must be a whole number >= 1 .*got 0"):
        BatchLoader(split, 4, threads=0)
    with pytest.raises(CnnlabError, match="argument 'threads' must be a whole number >= 1 .* or one of 'auto' or None, got 'fast'"):
        BatchLoader(split, 4, threads="fast")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_cpu_batches(split):
    """Parameters are drawn on the CPU, so the device changes where the work happens, not what comes out."""
    kw = dict(shuffle=True, augment=AUG, repeats=2, mean=MEAN, std=STD, seed=2)
    cpu = BatchLoader(split, 16, **kw)
    gpu = BatchLoader(split, 16, device="cuda", channels_last=True, **kw)
    assert gpu.x.device.type == "cuda"
    for (a, ya), (b, yb) in zip(cpu, gpu):
        assert b.device.type == "cuda" and yb.device.type == "cuda"
        assert torch.allclose(a, b.cpu(), atol=1e-5) and torch.equal(ya, yb.cpu())
