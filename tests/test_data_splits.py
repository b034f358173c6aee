"""Splits of the real datasets in ../shared/data: sizes, stratification, determinism, subsets, and normalisation
statistics equal to the figures measured in ../shared/data/README.md. The 60,000 JPEGs are decoded once per session
(session_cache), then read from the decode cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data import Split, load_dataset
from cnnlab.data.core import stratified_pick
from cnnlab.errors import CnnlabError


@pytest.fixture(scope="module")
def cifar(shared_data, session_cache):
    return load_dataset("cifar10", root=shared_data, cache_dir=session_cache)


def test_cifar10_jpeg_splits(cifar):
    assert cifar.name == "cifar10" and cifar.shape == (3, 32, 32) and cifar.num_classes == 10
    assert cifar.in_channels == 3 and cifar.image_size == 32
    assert cifar.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert cifar.splits() == ["train", "val", "holdout"] and cifar.test is None
    assert cifar.train.class_counts(10) == [4500] * 10 and cifar.val.class_counts(10) == [500] * 10
    assert not set(cifar.train.ids) & set(cifar.val.ids)  # val is carved out of train, not copied
    assert len(cifar.holdout) == 10000 and cifar.holdout.y is None and cifar.holdout.ids[:2] == ["00000", "00001"]
    for s in (cifar.train, cifar.val, cifar.holdout):
        assert s.x.dtype == torch.uint8 and s.x.device.type == "cpu" and s.x.is_contiguous()
    with pytest.raises(CnnlabError, match="cifar10 has no split 'test'; available splits: train, val, holdout"):
        cifar.split("test")


def test_cifar10_statistics_match_the_measured_figures(shared_data, session_cache, cifar):
    full = load_dataset("cifar10", root=shared_data, cache_dir=session_cache, val_size=0)
    # ../shared/data/README.md: train mean (0.491250, 0.482090, 0.446521), std (0.245232, 0.242782, 0.260629)
    assert full.mean == pytest.approx((0.491250, 0.482090, 0.446521), abs=2e-6)
    assert full.std == pytest.approx((0.245232, 0.242782, 0.260629), abs=2e-6)
    assert full.val is None and len(full.train) == 50000
    # with a validation split the statistics come from the 45,000 remaining training images only
    x = cifar.train.x.numpy()
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64) / 255  # an independent computation (numpy, no histogram)
    std = np.sqrt(np.square(x[::10] / 255 - mean[None, :, None, None]).mean(axis=(0, 2, 3)))
    assert cifar.mean == pytest.approx(tuple(mean), abs=2e-6)
    assert cifar.std == pytest.approx(tuple(std), abs=5e-3)  # std of every 10th image: a looser check


def test_cifar10_split_is_deterministic_and_seeded(shared_data, session_cache, cifar):
    again = load_dataset("cifar10", root=shared_data, cache_dir=session_cache)
    assert again.val.ids == cifar.val.ids and torch.equal(again.val.x, cifar.val.x)
    other = load_dataset("cifar10", root=shared_data, cache_dir=session_cache, seed=1, val_size=1000)
    assert other.val.class_counts(10) == [100] * 10 and not set(other.val.ids) <= set(cifar.val.ids)


def test_subsets_are_stratified_and_leave_val_alone(shared_data, session_cache, cifar):
    small = load_dataset("cifar10", root=shared_data, cache_dir=session_cache, train_subset=300, val_subset=100)
    assert small.train.class_counts(10) == [30] * 10 and small.val.class_counts(10) == [10] * 10
    assert set(small.val.ids) <= set(cifar.val.ids) and set(small.train.ids) <= set(cifar.train.ids)
    assert small.mean == cifar.mean  # a quick run normalises exactly as the full run
    bigger = load_dataset("cifar10", root=shared_data, cache_dir=session_cache, train_subset=301)
    assert bigger.val.ids == cifar.val.ids and sum(bigger.train.class_counts(10)) == 301


def test_bad_split_sizes(shared_data, session_cache):
    kw = dict(root=shared_data, cache_dir=session_cache)
    with pytest.raises(CnnlabError, match=r"val_size must be between 0 and 49999 .*got 50000"):
        load_dataset("cifar10", val_size=50000, **kw)
    with pytest.raises(CnnlabError, match=r"train_subset must be between 1 and 45,000"):
        load_dataset("cifar10", train_subset=45001, **kw)
    with pytest.raises(CnnlabError, match="val_subset is set but val_size is 0"):
        load_dataset("cifar10", val_size=0, val_subset=10, **kw)
    with pytest.raises(CnnlabError, match="val_size must be a whole number"):
        load_dataset("cifar10", val_size=0.1, **kw)


def test_fashion_mnist_official_files(shared_data):
    ds = load_dataset("fashion-mnist", root=shared_data, val_size=0)
    assert ds.name == "fashion-mnist" and ds.shape == (1, 28, 28) and ds.splits() == ["train", "test"]
    assert ds.train.class_counts(10) == [6000] * 10 and ds.test.class_counts(10) == [1000] * 10
    # ../shared/data/README.md: train mean 0.286041, std 0.353024
    assert ds.mean == pytest.approx((0.286041,), abs=2e-6) and ds.std == pytest.approx((0.353024,), abs=2e-6)
    with_val = load_dataset("fashion-mnist", root=shared_data)
    assert len(with_val.train) == 55000 and with_val.val.class_counts(10) == [500] * 10
    assert torch.equal(with_val.test.x, ds.test.x)


def test_split_subset_copies_and_accepts_every_index_form():
    s = Split(torch.arange(5 * 12, dtype=torch.uint8).view(5, 3, 2, 2), torch.tensor([0, 1, 0, 1, 2]),
              list("abcde"))
    assert s.subset(2).ids == ["a", "b"] and s.subset(slice(1, 5, 2)).ids == ["b", "d"]
    assert s.subset([4, 0]).ids == ["e", "a"] and s.subset(torch.tensor([-1])).ids == ["e"]
    sub = s.subset(torch.tensor([1, 2]))
    sub.x.fill_(0)
    sub.y.fill_(9)
    sub.ids.append("z")
    assert s.x[1].sum() > 0 and s.y.tolist() == [0, 1, 0, 1, 2] and s.ids == list("abcde")
    with pytest.raises(IndexError):
        s.subset([5])
    unlabelled = Split(s.x, None, None).subset(3)
    assert unlabelled.y is None and unlabelled.ids is None and len(unlabelled) == 3


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 40), min_size=1, max_size=6), frac=st.floats(0, 1), seed=st.integers(0, 99))
def test_stratified_pick_keeps_class_shares(counts, frac, seed):
    y = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])[torch.randperm(sum(counts))]
    n = int(frac * len(y))
    pick = stratified_pick(y, n, torch.Generator().manual_seed(seed))
    assert len(pick) == n and torch.equal(pick, pick.unique())  # sorted, no repeats
    got = torch.bincount(y[pick], minlength=len(counts))
    for k, c in enumerate(counts):
        share = c * n / len(y)
        assert int(share) <= got[k] <= int(share) + 1
    assert torch.equal(pick, stratified_pick(y, n, torch.Generator().manual_seed(seed)))


def test_a_representative_sample_has_every_class_where_the_first_images_do_not(cifar):
    """end_train_* and the initial-loss batch are measured on representative(); the split's first images were
    three classes (train/ is read class folder by class folder), which made end_train_acc 45% for a network that
    predicts one class."""
    from cnnlab.data.core import END_TRAIN, FIRST_BATCH, representative

    assert cifar.train.subset(10_000).class_counts(10)[3:] == [0] * 7   # the order this guards against
    picked = representative(cifar.train, 10_000, 0, END_TRAIN)
    assert picked.class_counts(10) == [1000] * 10
    assert picked.ids == representative(cifar.train, 10_000, 0, END_TRAIN).ids          # the same every time
    assert picked.ids != representative(cifar.train, 10_000, 0, FIRST_BATCH).ids         # its own stream
    assert representative(cifar.train, 10 ** 6, 0, END_TRAIN) is cifar.train           # n covers the split
    unlabelled = representative(cifar.holdout, 100, 0, END_TRAIN)
    assert len(unlabelled) == 100 and unlabelled.ids == sorted(unlabelled.ids) != cifar.holdout.ids[:100]


def test_the_initial_loss_batch_holds_every_class(shared_data, session_cache):
    from cnnlab.training.config import config_from_dict
    from cnnlab.training.setup import first_images

    cfg = config_from_dict({"data": {"name": "cifar10", "root": str(shared_data), "train_subset": 1000,
                                     "val_subset": 100}, "model": {"name": "simplenn"}})
    ds = load_dataset("cifar10", root=shared_data, cache_dir=session_cache, train_subset=1000, val_subset=100)
    assert ds.train.y[:128].unique().tolist() == [0, 1]       # a stratified subset keeps the class order
    _, y = first_images(cfg, ds, torch.device("cpu"), 128)
    assert sorted(torch.bincount(y, minlength=10).tolist()) == [12, 12, 13, 13, 13, 13, 13, 13, 13, 13]
