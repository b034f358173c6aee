"""Property tests of the batched augmentations: shapes, dtypes, value ranges, per-image independence, and crop /
flip / Cutout against slow per-image references; the fused index-map pipeline equals the transforms applied in turn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data.augment import AUGMENTATIONS, Cutout, Pipeline, RandomCrop, RandomFlip, build_augmentation
from cnnlab.errors import CnnlabError
from test_data_common import jpeg_members

SETTINGS = settings(max_examples=40, deadline=None)


def batch(n, c, size, seed=0, dtype=torch.uint8):
    x = torch.randint(0, 256, (n, c, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    return x if dtype == torch.uint8 else x.to(dtype) / 255


@pytest.fixture(scope="module")
def real(shared_data):
    """32 real CIFAR images (uint8 [32, 3, 32, 32]) from the shared archive."""
    import io

    import numpy as np
    from PIL import Image
    imgs = [np.asarray(Image.open(io.BytesIO(b))) for _, b in sorted(jpeg_members(shared_data, per_class=11).items())]
    return torch.from_numpy(np.stack(imgs[:32])).permute(0, 3, 1, 2).contiguous()


# -- slow references, one image at a time -----------------------------------------------------------------------------
def ref_crop(img, dy, dx, p, mode):
    c, h, w = img.shape
    padded = F.pad(img[None].float(), (p, p, p, p), mode="constant" if mode == "zeros" else "reflect")[0]
    return padded[:, p + dy:p + dy + h, p + dx:p + dx + w].to(img.dtype)


def ref_cutout(img, centres, size):
    out = img.clone()
    h, w = img.shape[1:]
    for cy, cx in centres.tolist():
        top, left = int(cy * h) - size // 2, int(cx * w) - size // 2
        out[:, max(top, 0):max(top + size, 0), max(left, 0):max(left + size, 0)] = 0
    return out


@SETTINGS
@given(n=st.integers(1, 6), c=st.sampled_from([1, 3]), size=st.integers(3, 12), p=st.integers(0, 6),
       mode=st.sampled_from(["zeros", "reflect"]), seed=st.integers(0, 2**31))
def test_crop_matches_the_padded_slice_reference(n, c, size, p, mode, seed):
    if mode == "reflect":
        p = min(p, size - 1)
    x = batch(n, c, size, seed)
    t = RandomCrop(padding=p, mode=mode)
    params = t.sample(n, torch.Generator().manual_seed(seed))
    out = t.apply(x, params)
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(n):
        dy, dx = int(params["dy"][i]), int(params["dx"][i])
        assert -p <= dy <= p and -p <= dx <= p
        assert torch.equal(out[i], ref_crop(x[i], dy, dx, p, mode))


@SETTINGS
@given(n=st.integers(1, 6), size=st.integers(2, 10), prob=st.floats(0, 1), seed=st.integers(0, 2**31),
       floating=st.booleans())
def test_flip_matches_the_reference(n, size, prob, seed, floating):
    x = batch(n, 3, size, seed, torch.float32 if floating else torch.uint8)
    t = RandomFlip(p=prob)
    params = t.sample(n, torch.Generator().manual_seed(seed))
    out = t.apply(x, params)
    assert out.dtype == x.dtype
    for i in range(n):
        assert torch.equal(out[i], x[i].flip(-1) if params["flip"][i] else x[i])


@SETTINGS
@given(n=st.integers(1, 5), size=st.integers(4, 12), hole=st.integers(1, 14), count=st.integers(1, 3),
       seed=st.integers(0, 2**31))
def test_cutout_matches_the_reference_and_only_zeroes(n, size, hole, count, seed):
    x = batch(n, 3, size, seed, torch.float32) + 0.5  # no zeros in the input, so every zero is a hole
    t = Cutout(size=hole, count=count)
    params = t.sample(n, torch.Generator().manual_seed(seed))
    out = t.apply(x, params)
    for i in range(n):
        assert torch.equal(out[i], ref_cutout(x[i], params["centre"][i], hole))
    zeroed = out == 0
    assert torch.equal(out[~zeroed], x[~zeroed])
    assert int(zeroed[:, 0].sum(dim=(1, 2)).max()) <= count * hole * hole  # clipped holes are smaller, never larger
    assert torch.equal(zeroed[:, 0:1].expand_as(zeroed), zeroed)  # the same hole in every channel


@SETTINGS
@given(n=st.integers(1, 6), p=st.integers(0, 5), mode=st.sampled_from(["zeros", "reflect"]),
       seed=st.integers(0, 2**31), cutout=st.booleans())
def test_fused_pipeline_equals_transforms_in_turn(n, p, mode, seed, cutout):
    """Crop and flip are fused into one gather; the result must equal applying them one after another."""
    x = batch(n, 3, 8, seed)
    ts = [RandomCrop(p, mode), RandomFlip(0.5), RandomCrop(1, "zeros")] + ([Cutout(3, 2)] if cutout else [])
    pipe = Pipeline(ts)
    params = pipe.sample(n, torch.Generator().manual_seed(seed))
    fused = pipe.apply(x, params)
    step = x
    for t, prm in zip(ts, params):
        if t.float_only and step.dtype == torch.uint8:
            step = step.float() / 255
        step = t.apply(step, prm)
    if step.dtype == torch.uint8:
        step = step.float() / 255
    assert fused.dtype == torch.float32 and torch.equal(fused, step)


def test_outputs_stay_in_range_and_values_come_from_the_image(real):
    pipe = build_augmentation(["crop", "flip", {"name": "cutout", "size": 8}])
    out = pipe(real, torch.Generator().manual_seed(0))
    assert out.shape == real.shape and out.dtype == torch.float32
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    geo = build_augmentation(["crop", "flip"])(real, torch.Generator().manual_seed(0), finish=lambda u: u)
    assert geo.dtype == torch.uint8  # crop and flip never leave uint8
    for i in range(len(real)):  # a translated, mirrored image holds only its own pixel values, plus the zero border
        allowed = set(real[i].unique().tolist()) | {0}
        assert set(geo[i].unique().tolist()) <= allowed


def test_randomness_is_independent_per_image(real):
    """One image repeated 512 times: every copy draws its own offsets, flips and hole, with the right frequencies."""
    x = real[:1].expand(512, -1, -1, -1).contiguous()
    g = torch.Generator().manual_seed(1)
    crop, flip, cut = RandomCrop(4), RandomFlip(0.5), Cutout(8)
    pc, pf, pk = crop.sample(512, g), flip.sample(512, g), cut.sample(512, g)
    assert set(pc["dy"].tolist()) == set(range(-4, 5)) == set(pc["dx"].tolist())
    assert 200 < int(pf["flip"].sum()) < 312  # Binomial(512, 0.5): far beyond 5 sigma otherwise
    corr = torch.corrcoef(torch.stack([pc["dy"].float(), pc["dx"].float(), pf["flip"].float()]))
    assert corr.sub(torch.eye(3)).abs().max() < 0.2  # no coupling between parameters of one image
    out = Pipeline([crop, flip, cut]).apply(x, [pc, pf, pk])
    assert len(torch.unique(out.reshape(512, -1), dim=0)) > 500  # nearly every copy differs from every other


def test_same_generator_seed_same_batch(real):
    pipe = build_augmentation("crop,flip,cutout")
    a = pipe(real, torch.Generator().manual_seed(5))
    b = pipe(real, torch.Generator().manual_seed(5))
    c = pipe(real, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_registry_and_spec_errors():
    assert {"crop", "flip", "cutout"} <= set(AUGMENTATIONS.names())
    pipe = build_augmentation([{"name": "crop", "padding": 2, "mode": "reflect"}, "flip"])
    assert repr(pipe) == "Pipeline(crop(padding=2, mode='reflect'), flip(p=0.5))"
    assert len(build_augmentation(None)) == 0 and build_augmentation(pipe) is pipe
    with pytest.raises(CnnlabError, match="unknown augmentation 'blur'.*crop, cutout, flip"):
        build_augmentation(["blur"])
    with pytest.raises(CnnlabError, match="augmentation 'crop' does not take option.*'pad'.*padding, mode"):
        build_augmentation([{"name": "crop", "pad": 4}])
    with pytest.raises(CnnlabError, match="has no 'name'"):
        build_augmentation([{"padding": 4}])
    with pytest.raises(CnnlabError, match="'flip': p must be a probability"):
        build_augmentation([{"name": "flip", "p": 1.5}])
    with pytest.raises(CnnlabError, match="'crop': mode must be 'zeros' or 'reflect'"):
        RandomCrop(4, "wrap")
    with pytest.raises(CnnlabError, match="'cutout': size must be a whole number >= 1"):
        Cutout(size=0)
    with pytest.raises(CnnlabError, match="reflect padding 8 must be smaller than the image side 8"):
        RandomCrop(8, "reflect")(batch(1, 1, 8))


@pytest.mark.parametrize("specs", [["crop", "flip"], ["flip", "cutout", "crop"], ["cutout", "crop"], []])
def test_images_stored_with_a_border_give_the_same_batch(real, specs):
    """The loader stores images with the zero border the first gather reads through; the result must not change."""
    pipe = build_augmentation(specs)
    params = pipe.sample(len(real), torch.Generator().manual_seed(3))
    plain = pipe.apply(real, params)
    bordered = pipe.apply(F.pad(real, (1, 1, 1, 1)), params, bordered=True)
    assert bordered.shape == real.shape and torch.equal(plain, bordered)


# -- progressive resizing (issue #26) ---------------------------------------------------------------------------------
def _slots(n, epoch):
    from cnnlab.data.augment import Slots
    return Slots(image=torch.arange(n), copy=torch.zeros(n, dtype=torch.long), epoch=epoch, seed=0, population=n,
                 repeats=1)


def test_resize_scales_the_first_epochs_only_and_keeps_the_content(real):
    pipe = build_augmentation(["crop", {"name": "resize", "size": 20, "epochs": 2}])
    assert pipe.uses_slots  # the loader must give it the epoch
    x = real[:8]
    for epoch, side in ((0, 20), (1, 20), (2, 32), (7, 32)):
        out = pipe.apply(x, pipe.sample(len(x), torch.Generator().manual_seed(1), _slots(len(x), epoch)))
        assert out.shape == (8, 3, side, side) and out.dtype == torch.float32
    # scaled, not cropped: the small image is the antialiased downscale of the whole (uncropped) picture
    alone = build_augmentation([{"name": "resize", "size": 16, "epochs": 1}])
    small = alone.apply(x, alone.sample(8, None, _slots(8, 0)))
    ref = F.interpolate(x.float() / 255, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(small, ref, atol=1e-6)
    # two stages stack: 16 px while both apply, then 24, then full size (an upscale is never made)
    two = build_augmentation([{"name": "resize", "size": 16, "epochs": 1}, {"name": "resize", "size": 24,
                                                                             "epochs": 3}])
    sides = [two.apply(x, two.sample(8, None, _slots(8, e))).shape[-1] for e in range(4)]
    assert sides == [16, 24, 24, 32]


@pytest.mark.parametrize("opts, word", [({"size": 4}, "size"), ({"size": 24.5}, "size"), ({"epochs": -1}, "epochs"),
                                        ({"epochs": True}, "epochs")])
def test_resize_bad_options_name_the_option(opts, word):
    with pytest.raises(CnnlabError, match=f"'resize': {word}"):
        build_augmentation([{"name": "resize", **opts}])
