"""Dataset sources on small files in the official layouts: CIFAR-10 python batches (Python 2 pickles), Fashion-MNIST
IDX files, image folders and tars of real JPEGs from ../shared/data; the decode cache; every bad input the issue
names gives one CnnlabError naming the file and the fix, and the user's files are left untouched."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import DATASETS, list_datasets, load_dataset
from cnnlab.data.cifar import unpickle
from cnnlab.data.download import check_md5, download, md5_file
from cnnlab.errors import CnnlabError
from test_data_common import cifar_batch, cifar_meta, idx_bytes, jpeg_members, write_folder, write_idx_gz, write_tar


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Loads without cache_dir use CNNLAB_CACHE: point it into tmp_path so tests never write to the user's cache."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture
def members(shared_data):
    return jpeg_members(shared_data, per_class=6, holdout=4)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def _digest(root) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


# -- registry ---------------------------------------------------------------------------------------------------------
def test_registry_names_and_unknown_name():
    assert list_datasets() == ["cifar10", "fashion-mnist", "imagefolder"]
    assert DATASETS.get("fashion-mnist") is DATASETS.get("fashion_mnist")
    with pytest.raises(CnnlabError, match="unknown dataset 'cifar100'.*cifar10"):
        load_dataset("cifar100")


# -- CIFAR-10 python batches -----------------------------------------------------------------------------------------
def _real_images(members, n):
    """n real 32x32 RGB CIFAR images (decoded from the shared JPEGs), cycled."""
    imgs = [_decode(b) for k, b in sorted(members.items()) if k.startswith("train/")]
    return np.stack([imgs[i % len(imgs)] for i in range(n)])


def _write_batches(folder, members, per_batch=20):
    folder.mkdir(parents=True)
    images = _real_images(members, per_batch * 6)
    labels = [i % 10 for i in range(per_batch * 6)]
    for b in range(5):
        sl = slice(b * per_batch, (b + 1) * per_batch)
        (folder / f"data_batch_{b + 1}").write_bytes(cifar_batch(images[sl], labels[sl],
                                                                 f"training batch {b + 1} of 5".encode()))
    (folder / "test_batch").write_bytes(cifar_batch(images[-per_batch:], labels[-per_batch:], b"testing batch 1 of 1"))
    (folder / "batches.meta").write_bytes(cifar_meta())
    return images, labels


def test_cifar_python_folder_and_archive(tmp_path, members, cache):
    images, labels = _write_batches(tmp_path / "cifar-10-batches-py", members)
    a = load_dataset("cifar10", root=tmp_path, val_size=10, cache_dir=cache)
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    b = load_dataset("cifar10", root=tmp_path / "cifar-10-python.tar.gz", val_size=10, cache_dir=cache)
    for ds in (a, b):
        assert ds.classes[:3] == ["airplane", "automobile", "bird"] and ds.shape == (3, 32, 32)
        assert len(ds.train) == 90 and len(ds.val) == 10 and len(ds.test) == 20 and ds.holdout is None
        assert ds.val.class_counts(10) == [1] * 10  # stratified: 10 of 100 = one per class
        assert torch.equal(ds.test.x.permute(0, 2, 3, 1), torch.from_numpy(images[-20:]))
        assert ds.test.y.tolist() == labels[-20:]
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y)
    assert not (cache / "decoded").exists() or not any((cache / "decoded").iterdir())  # fast source: not cached


def test_restricted_unpickler_refuses_foreign_globals(tmp_path, members):
    folder = tmp_path / "cifar-10-batches-py"
    _write_batches(folder, members)
    victim = tmp_path / "keep-me.txt"
    victim.write_text("user data")

    class Evil:
        def __reduce__(self):
            return os.remove, (str(victim),)

    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=3))
    with pytest.raises(CnnlabError, match=r"data_batch_3.*posix\.remove.*refusing"):
        load_dataset("cifar10", root=tmp_path)
    assert victim.read_text() == "user data"  # nothing in the pickle ran


@pytest.mark.parametrize("content, match", [
    ({b"labels": [0]}, "'data' must be a uint8 array"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "'data' must be a uint8 array"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}, "'labels' must be a list of 2 ints"),
    ([1, 2, 3], "holds a list, not the dict"),
])
def test_cifar_batch_with_wrong_content(tmp_path, members, content, match):
    folder = tmp_path / "cifar-10-batches-py"
    _write_batches(folder, members)
    (folder / "data_batch_2").write_bytes(pickle.dumps(content, protocol=3))
    with pytest.raises(CnnlabError, match=f"data_batch_2.*{match}"):
        load_dataset("cifar10", root=tmp_path)


def test_cifar_truncated_batch_and_missing_batch(tmp_path, members):
    folder = tmp_path / "cifar-10-batches-py"
    _write_batches(folder, members)
    data = (folder / "data_batch_4").read_bytes()
    (folder / "data_batch_4").write_bytes(data[: len(data) // 2])
    with pytest.raises(CnnlabError, match="data_batch_4 is not a readable CIFAR-10 batch"):
        load_dataset("cifar10", root=tmp_path)
    (folder / "data_batch_4").unlink()
    with pytest.raises(CnnlabError, match="data_batch_4 missing"):
        load_dataset("cifar10", root=tmp_path)


# -- Fashion-MNIST IDX ------------------------------------------------------------------------------------------------
@pytest.fixture
def fmnist_slice(shared_data, tmp_path):
    """The first 200 train / 50 test images of the real files, rewritten in the official IDX .gz layout."""
    from cnnlab.data.idx import read_idx
    src = shared_data / "fashion-mnist"
    out = tmp_path / "fashion-mnist"
    out.mkdir()
    parts = {}
    for prefix, n in (("train", 200), ("t10k", 50)):
        x = read_idx(src / f"{prefix}-images-idx3-ubyte.gz", 3)[:n]
        y = read_idx(src / f"{prefix}-labels-idx1-ubyte.gz", 1)[:n]
        write_idx_gz(out / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx_gz(out / f"{prefix}-labels-idx1-ubyte.gz", y)
        parts[prefix] = (x, y)
    return tmp_path, parts


def test_fashion_mnist_idx_layout(fmnist_slice):
    root, parts = fmnist_slice
    ds = load_dataset("fashion-mnist", root=root, val_size=20)
    assert ds.name == "fashion-mnist" and ds.shape == (1, 28, 28) and ds.classes[0] == "T-shirt/top"
    assert len(ds.train) == 180 and len(ds.val) == 20 and len(ds.test) == 50
    assert torch.equal(ds.test.x[:, 0], torch.tensor(parts["t10k"][0]))
    assert ds.test.y.tolist() == parts["t10k"][1].tolist()
    assert sorted(ds.train.y.tolist() + ds.val.y.tolist()) == sorted(parts["train"][1].tolist())


def test_fashion_mnist_uncompressed_and_torchvision_layout(fmnist_slice, tmp_path):
    root, parts = fmnist_slice
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (root / "fashion-mnist").iterdir():  # torchvision keeps the decompressed files in FashionMNIST/raw/
        (raw / f.name[:-3]).write_bytes(__import__("gzip").decompress(f.read_bytes()))
    ds = load_dataset("fashion_mnist", root=tmp_path / "tv", val_size=0)
    assert len(ds.train) == 200 and ds.val is None and torch.equal(ds.test.x[:, 0], torch.tensor(parts["t10k"][0]))


@pytest.mark.parametrize("damage, match", [
    (lambda b: b[: len(b) // 2], "truncated or not a valid gzip"),
    (lambda b: __import__("gzip").compress(b"\x00\x00\x08\x01" + __import__("gzip").decompress(b)[4:]),
     "magic number is 0x00000801, expected 0x00000803"),
    (lambda b: __import__("gzip").compress(__import__("gzip").decompress(b)[:-5]), "truncated or corrupt"),
])
def test_fashion_mnist_bad_files(fmnist_slice, damage, match):
    root, _ = fmnist_slice
    path = root / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CnnlabError, match=f"t10k-images-idx3-ubyte.gz.*{match}"):
        load_dataset("fashion-mnist", root=root)


def test_fashion_mnist_images_and_labels_disagree(fmnist_slice):
    root, parts = fmnist_slice
    write_idx_gz(root / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz", parts["t10k"][1][:40])
    with pytest.raises(CnnlabError, match="50 images but .* 40 labels"):
        load_dataset("fashion-mnist", root=root)


# -- image folders ---------------------------------------------------------------------------------------------------
def test_image_folder_dir_and_tar_agree_with_pil(tmp_path, members, cache):
    folder = write_folder(tmp_path / "dir", members)
    archive = write_tar(tmp_path / "set.tar.gz", members, prefix="mydata/")
    a = load_dataset("imagefolder", root=folder, val_size=3, cache_dir=cache)
    b = load_dataset("imagefolder", root=archive, val_size=3, cache_dir=cache)
    for ds in (a, b):
        assert ds.classes == ["airplane", "automobile", "bird"] and ds.test is None
        assert len(ds.train) == 15 and ds.val.class_counts(3) == [1, 1, 1] and len(ds.holdout) == 4
        assert ds.holdout.y is None and ds.holdout.ids == ["00000", "00001", "00002", "00003"]
        assert ds.holdout.x[2].permute(1, 2, 0).numpy().tolist() == _decode(members["holdout/00002.jpg"]).tolist()
    assert torch.equal(a.train.x, b.train.x) and a.train.ids == b.train.ids and a.mean == b.mean
    assert all(i.split("/")[0] in a.classes for i in a.train.ids)
    full = load_dataset("imagefolder", root=folder, val_size=0, cache_dir=cache)
    k = full.train.ids.index("bird/0003")
    assert full.train.y[k] == 2 and full.train.x[k].permute(1, 2, 0).numpy().tolist() == _decode(
        members["train/bird/0003.jpg"]).tolist()


def test_image_folder_labelled_test_split(tmp_path, members):
    files = {k: v for k, v in members.items() if k.startswith("train/")}
    files.update({k.replace("train/", "test/"): v for k, v in files.items() if k.endswith(("0000.jpg", "0001.jpg"))})
    ds = load_dataset("imagefolder", root=write_folder(tmp_path / "d", files), val_size=0, cache_dir=tmp_path / "c")
    assert ds.holdout is None and len(ds.test) == 6 and ds.test.class_counts(3) == [2, 2, 2]
    with pytest.raises(CnnlabError, match="has no split 'holdout'; available splits: train, test"):
        ds.split("holdout")


def test_decode_cache_reused_and_never_stale(tmp_path, members, cache):
    folder = write_folder(tmp_path / "d", members)
    first = load_dataset("imagefolder", root=folder, val_size=0, cache_dir=cache)
    entries = list((cache / "decoded").glob("*.npz"))
    assert len(entries) == 1
    mtime = entries[0].stat().st_mtime_ns
    again = load_dataset("imagefolder", root=folder, val_size=0, cache_dir=cache)
    assert entries[0].stat().st_mtime_ns == mtime and torch.equal(first.train.x, again.train.x)
    (folder / "train" / "bird" / "0099.jpg").write_bytes(members["train/airplane/0000.jpg"])  # the source changes
    changed = load_dataset("imagefolder", root=folder, val_size=0, cache_dir=cache)
    assert len(changed.train) == len(first.train) + 1 and len(list((cache / "decoded").glob("*.npz"))) == 2
    entries[0].write_bytes(b"not a zip")  # a damaged cache entry is ours: decoded again, not an error
    with pytest.warns(UserWarning, match="ignoring unreadable decode cache"):
        (folder / "train" / "bird" / "0099.jpg").unlink()
        os.utime(folder / "train" / "bird", None)
        restored = load_dataset("imagefolder", root=folder, val_size=0, cache_dir=cache)
    assert torch.equal(restored.train.x, first.train.x)


def test_cifar10_finds_an_extracted_image_folder(tmp_path, members, cache):
    write_folder(tmp_path / "cifar10", members)
    ds = load_dataset("cifar10", root=tmp_path, val_size=3, cache_dir=cache)
    assert len(ds.holdout) == 4 and ds.test is None and "image folder" in ds.source


def _bad_image(kind: str) -> bytes:
    buf = io.BytesIO()
    if kind == "size":
        Image.new("RGB", (16, 16), (10, 20, 30)).save(buf, "JPEG")
    elif kind == "mode":
        Image.new("RGBA", (32, 32), (10, 20, 30, 40)).save(buf, "PNG")
    else:
        return b"\xff\xd8\xff\xe0 this is not really a jpeg"
    return buf.getvalue()


@pytest.mark.parametrize("kind, match", [
    ("size", r"train/bird/0099\.jpg is 16x16 RGB but the dataset's first image is 32x32 RGB; convert it"),
    ("mode", r"train/bird/0099\.jpg is 32x32 RGBA but the dataset's first image is 32x32 RGB"),
    ("corrupt", r"cannot decode image .*train/bird/0099\.jpg .*replace or remove"),
])
def test_bad_images_are_named(tmp_path, members, kind, match):
    files = dict(members)
    files["train/bird/0099.jpg"] = _bad_image(kind)
    folder = write_folder(tmp_path / "d", files)
    before = _digest(folder)
    with pytest.raises(CnnlabError, match=match):
        load_dataset("imagefolder", root=folder, cache_dir=tmp_path / "c")
    archive = write_tar(tmp_path / "d.tar", files, mode="w")
    with pytest.raises(CnnlabError, match=match.replace(r"train/", r"d\.tar:train/")):
        load_dataset("imagefolder", root=archive, cache_dir=tmp_path / "c")
    assert _digest(folder) == before  # the user's files are never modified


def test_first_image_with_unsupported_mode(tmp_path):
    buf = io.BytesIO()
    Image.new("CMYK", (8, 8)).save(buf, "JPEG")
    folder = write_folder(tmp_path / "d", {"train/a/0.jpg": buf.getvalue()})
    with pytest.raises(CnnlabError, match="has image mode CMYK; .* RGB or greyscale"):
        load_dataset("imagefolder", root=folder, val_size=0)


def test_empty_class_folder_and_misplaced_images(tmp_path, members):
    folder = write_folder(tmp_path / "d", members)
    (folder / "train" / "zebra").mkdir()
    with pytest.raises(CnnlabError, match=r"class folder train/zebra/ holds no .*images; add images or remove"):
        load_dataset("imagefolder", root=folder)
    (folder / "train" / "zebra").rmdir()
    (folder / "train" / "stray.jpg").write_bytes(members["train/bird/0000.jpg"])
    with pytest.raises(CnnlabError, match=r"train/stray\.jpg: images must sit at train/<class>/<image>"):
        load_dataset("imagefolder", root=folder)


def test_folder_without_train_and_missing_root(tmp_path, members):
    folder = write_folder(tmp_path / "d", {"holdout/1.jpg": members["holdout/00000.jpg"]})
    with pytest.raises(CnnlabError, match="holds no train/<class>/<image> files"):
        load_dataset("imagefolder", root=folder)
    with pytest.raises(CnnlabError, match="does not exist; for dataset 'imagefolder' point --data-root"):
        load_dataset("imagefolder", root=tmp_path / "nowhere")


# -- archive safety ---------------------------------------------------------------------------------------------------
def _tar_with(path, good, extra):
    with tarfile.open(path, "w:gz") as tf:
        for rel, data in good.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def _info(name, kind=tarfile.REGTYPE, link="", size=0):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size
    return info


@pytest.mark.parametrize("member, match", [
    (_info("/etc/evil.jpg", size=1), r"member '/etc/evil\.jpg' has an absolute path"),
    (_info("train/../../evil.jpg", size=1), r"member 'train/\.\./\.\./evil\.jpg' contains '\.\.'"),
    (_info("train/bird/link.jpg", tarfile.SYMTYPE, "../../../etc/passwd"),
     r"link to '\.\./\.\./\.\./etc/passwd'.*outside"),
    (_info("train/bird/abs.jpg", tarfile.SYMTYPE, "/etc/passwd"), r"link to '/etc/passwd'.*outside"),
    (_info("train/bird/hard.jpg", tarfile.LNKTYPE, "../outside.jpg"), r"link to '\.\./outside\.jpg'.*outside"),
    (_info("train/bird/dev", tarfile.CHRTYPE), r"member 'train/bird/dev' is a device or pipe"),
])
def test_archive_members_that_escape_are_refused(tmp_path, members, member, match):
    archive = _tar_with(tmp_path / "evil.tar.gz", members, [member])
    with pytest.raises(CnnlabError, match=r"evil\.tar\.gz.*" + match):
        load_dataset("imagefolder", root=archive, cache_dir=tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz"]  # nothing extracted, no cache written


def test_links_inside_an_archive_are_followed(tmp_path, members):
    archive = _tar_with(tmp_path / "ok.tar.gz", members,
                        [_info("train/bird/copy.jpg", tarfile.SYMTYPE, "0000.jpg"),
                         _info("train/bird/hard.jpg", tarfile.LNKTYPE, "train/bird/0001.jpg")])
    ds = load_dataset("imagefolder", root=archive, val_size=0, cache_dir=tmp_path / "c")
    ids = ds.train.ids
    assert torch.equal(ds.train.x[ids.index("bird/copy")], ds.train.x[ids.index("bird/0000")])
    assert torch.equal(ds.train.x[ids.index("bird/hard")], ds.train.x[ids.index("bird/0001")])


def test_folder_symlink_leaving_the_folder_is_refused(tmp_path, members):
    folder = write_folder(tmp_path / "d", members)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(members["train/bird/0000.jpg"])
    (folder / "train" / "bird" / "link.jpg").symlink_to(outside)
    with pytest.raises(CnnlabError, match=r"'train/bird/link\.jpg' is a link to .*outside the folder"):
        load_dataset("imagefolder", root=folder)


def test_truncated_and_corrupt_archives(tmp_path, members):
    good = write_tar(tmp_path / "good.tar.gz", members).read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.tar.gz").write_bytes(b"\x1f\x8b" + os.urandom(500))
    for name in ("cut.tar.gz", "junk.tar.gz"):
        with pytest.raises(CnnlabError, match=rf"archive '.*{name}' is truncated or corrupt .*copy or download it"):
            load_dataset("imagefolder", root=tmp_path / name, cache_dir=tmp_path / "c")


# -- where the data lives, downloads ----------------------------------------------------------------------------------
def test_not_found_says_where_it_looked_and_how_to_point(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(CnnlabError) as e:
        load_dataset("fashion-mnist")
    msg = str(e.value)
    assert "chosen by the per-user data directory" in msg and str(tmp_path / "xdg" / "cnnlab" / "data") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "--data-root" in msg and "CNNLAB_DATA" in msg
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    with pytest.raises(CnnlabError, match=r"cifar10 not found under .*env' \(chosen by CNNLAB_DATA\).*"
                                          r"cifar-10-python\.tar\.gz.*--download"):
        load_dataset("cifar10")
    with pytest.raises(CnnlabError, match=r"chosen by --data-root"):
        load_dataset("cifar10", root=tmp_path / "explicit")


def test_data_root_precedence(fmnist_slice, monkeypatch, tmp_path):
    root, _ = fmnist_slice
    monkeypatch.setenv("CNNLAB_DATA", str(root))
    assert len(load_dataset("fashion-mnist", val_size=0).train) == 200  # env used when no root is given
    with pytest.raises(CnnlabError, match="chosen by --data-root"):  # an explicit root wins over the env
        load_dataset("fashion-mnist", root=tmp_path / "elsewhere")


def test_md5_verification_on_local_files(shared_data, tmp_path):
    from cnnlab.data.idx import FILES
    name, md5 = FILES["train_labels"]
    check_md5(shared_data / "fashion-mnist" / name, md5)  # the shared copy is the official file
    bad = tmp_path / name
    data = (shared_data / "fashion-mnist" / name).read_bytes()
    bad.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # one bit pattern changed in the last byte
    with pytest.raises(CnnlabError, match=rf"{name} has MD5 [0-9a-f]{{32}} but the official file has {md5}"):
        check_md5(bad, md5)


def test_download_verifies_md5_before_the_file_appears(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"official bytes" * 1000)
    good = md5_file(src)
    dest = tmp_path / "data" / "file.bin"
    with pytest.raises(CnnlabError, match="has MD5 .* but the official file has 0{32}; nothing was kept"):
        download(src.as_uri(), dest, "0" * 32)
    assert not dest.parent.exists() or not any(dest.parent.iterdir())  # no partial or temporary file left
    assert download(src.as_uri(), dest, good) == dest and dest.read_bytes() == src.read_bytes()
    with pytest.raises(CnnlabError, match=r"could not download .*copy the file to .*--data-root / CNNLAB_DATA"):
        download("http://127.0.0.1:9/cifar-10-python.tar.gz", tmp_path / "x.tar.gz", good)


def test_restricted_unpickler_accepts_python3_protocols_without_extra_globals():
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    for protocol in (3, 4):
        out = unpickle(pickle.dumps({b"data": arr}, protocol=protocol), "p")
        assert np.array_equal(out[b"data"], arr)
    with pytest.raises(CnnlabError, match="_codecs.encode"):  # protocol 2 from Python 3 needs a codec global
        unpickle(pickle.dumps({b"data": arr}, protocol=2), "p")


def test_idx_writer_matches_the_real_header(shared_data):
    real = (shared_data / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    head = __import__("gzip").decompress(real)[:8]
    assert idx_bytes(np.zeros(10000, np.uint8))[:8] == head  # our test files use the official header layout
