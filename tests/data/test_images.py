import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from deepzen.data.images import (CIFAR10_CLASSES, load_cifar10, load_digits, load_digits_split, load_image_folder,
                                 load_mnist, read_idx, write_cifar10_like)
from deepzen.data.paths import DatasetCorruptedError, DatasetNotFoundError

MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """Reference IDX encoder, straight from the format description."""
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist_like(folder, n_train=6, n_test=4, *, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train, dtype=np.uint8),
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test, dtype=np.uint8)]
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(MNIST_NAMES, arrays):
        raw = idx_bytes(array)
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return arrays


@pytest.fixture(scope="module")
def mnist(real_dataset):
    folder = real_dataset("mnist")
    return folder, load_mnist()


def test_real_mnist_matches_the_published_counts(mnist):
    _, (x_train, y_train, x_test, y_test) = mnist
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert x_train.min() == 0 and x_train.max() == 255
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert x_train.flags.writeable


def test_real_mnist_equals_a_plain_gzip_frombuffer_read(mnist):
    folder, (x_train, y_train, x_test, y_test) = mnist
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz") as f:
        reference = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(folder / "train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    np.testing.assert_array_equal(x_test, reference)
    np.testing.assert_array_equal(y_train, labels)


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_format_sets_load_from_their_own_folder(monkeypatch, tmp_path, compress):
    monkeypatch.setenv("DEEPZEN_DATA", str(tmp_path))
    written = write_mnist_like(tmp_path / "fashion-mnist", compress=compress)
    loaded = load_mnist(kind="fashion-mnist")
    for got, want in zip(loaded, written):
        np.testing.assert_array_equal(got, want)
    assert loaded[1].dtype == np.int64


def test_mnist_dotted_uncompressed_names_are_accepted(tmp_path):
    written = write_mnist_like(tmp_path, compress=False)
    for name in MNIST_NAMES:
        stem, dims = name.rsplit("-", 2)[0], "-".join(name.rsplit("-", 2)[1:])
        os.rename(tmp_path / name, tmp_path / f"{stem}.{dims}")
    np.testing.assert_array_equal(load_mnist(tmp_path)[2], written[2])


def test_missing_mnist_files_name_the_dataset_and_source(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPZEN_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(kind="kmnist")
    assert str(tmp_path / "kmnist") in str(info.value)
    assert "train-images-idx3-ubyte.gz" in str(info.value) and "codh.rois.ac.jp" in str(info.value)


def test_truncated_real_mnist_copy_is_reported(mnist, tmp_path):
    folder, _ = mnist
    for name in MNIST_NAMES[2:]:
        (tmp_path / f"{name}.gz").symlink_to(folder / f"{name}.gz")
    with gzip.open(folder / "train-labels-idx1-ubyte.gz") as f:
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(f.read()[:-1])  # one label short
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes((folder / "train-images-idx3-ubyte.gz").read_bytes()[:1000])
    with pytest.raises(DatasetCorruptedError, match="truncated"):  # the cut gzip stream
        load_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").symlink_to(folder / "train-images-idx3-ubyte.gz")
    with pytest.raises(DatasetCorruptedError, match="corrupted or truncated: a \\(60000,\\) IDX array"):
        load_mnist(tmp_path)


def test_wrong_magic_and_mismatched_counts_are_reported(tmp_path):
    write_mnist_like(tmp_path, compress=False)
    raw = bytearray((tmp_path / "t10k-labels-idx1-ubyte").read_bytes())
    raw[0] = 0x1F
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(DatasetCorruptedError, match="magic"):
        load_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8)))  # 4 images, 3 labels
    with pytest.raises(DatasetCorruptedError, match="4 images but .* 3 labels"):
        load_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros((4, 1), np.uint8)))
    with pytest.raises(DatasetCorruptedError, match="1-d uint8"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("dtype, code", [(np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D), (np.float64, 0x0E)])
def test_read_idx_handles_every_type_code(tmp_path, dtype, code):
    array = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    (tmp_path / "a.idx").write_bytes(idx_bytes(array, code))
    result = read_idx(tmp_path / "a.idx")
    np.testing.assert_array_equal(result, array)
    assert result.dtype == np.dtype(dtype)


# -- CIFAR-10 -----------------------------------------------------------------------------------------

def test_cifar10_layout_matches_the_published_row_format(tmp_path):
    batches = write_cifar10_like(tmp_path, n=7)
    x_train, y_train, x_test, y_test = load_cifar10(tmp_path)
    assert x_train.shape == (35, 3, 32, 32) and x_test.shape == (7, 3, 32, 32)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    with open(batches / "data_batch_2", "rb") as f:
        raw = pickle.load(f, encoding="bytes")  # the reference reader: trusted, self-written file
    rows, labels = raw[b"data"], raw[b"labels"]
    for i, c, h, w in [(0, 0, 0, 0), (3, 1, 5, 31), (6, 2, 31, 7)]:
        assert x_train[7 + i, c, h, w] == rows[i, c * 1024 + h * 32 + w]
    assert y_train[7:14].tolist() == labels
    assert len(CIFAR10_CLASSES) == 10
    np.testing.assert_array_equal(load_cifar10(batches)[2], x_test)  # the batch folder itself also works


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.makedirs, (self.target,)


def test_cifar10_reader_refuses_pickles_that_call_other_code(tmp_path):
    batches = write_cifar10_like(tmp_path, n=2)
    marker = tmp_path / "executed"
    with open(batches / "test_batch", "wb") as f:
        pickle.dump({b"data": _Exploit(str(marker)), b"labels": [0, 1]}, f)
    with pytest.raises(DatasetCorruptedError, match="not allowed"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def test_cifar10_truncated_or_malformed_batches_are_reported(tmp_path):
    batches = write_cifar10_like(tmp_path, n=2)
    content = (batches / "data_batch_3").read_bytes()
    (batches / "data_batch_3").write_bytes(content[: len(content) // 2])
    with pytest.raises(DatasetCorruptedError, match="data_batch_3"):
        load_cifar10(tmp_path)
    with open(batches / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}, f, protocol=4)
    with pytest.raises(DatasetCorruptedError, match="labels in 0..9"):
        load_cifar10(tmp_path)
    with open(batches / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=4)
    with pytest.raises(DatasetCorruptedError, match=r"\(N, 3072\)"):
        load_cifar10(tmp_path)


def test_cifar10_missing_files_point_to_the_archive(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPZEN_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        load_cifar10()


# -- image folders ------------------------------------------------------------------------------------

def make_image_folder(root, sizes=((5, 7), (5, 7), (5, 7))):
    from PIL import Image

    rng = np.random.default_rng(0)
    written = []
    for name, (h, w) in zip(["dog", "cat", "cat"], sizes):
        (root / name).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = root / name / f"{len(written)}.png"
        Image.fromarray(pixels).save(path)
        written.append((name, path, pixels))
    (root / "cat" / "notes.txt").write_text("not an image")
    return written


def test_image_folder_reads_classes_and_pixels(tmp_path):
    written = make_image_folder(tmp_path)
    x, y, classes = load_image_folder(tmp_path)
    assert classes == ["cat", "dog"]
    assert x.shape == (3, 3, 5, 7) and x.dtype == np.uint8
    by_file = sorted(written, key=lambda item: (classes.index(item[0]), item[1].name))
    for i, (name, _, pixels) in enumerate(by_file):
        assert y[i] == classes.index(name)
        np.testing.assert_array_equal(x[i], pixels.transpose(2, 0, 1))


def test_image_folder_grayscale_and_resize(tmp_path):
    from PIL import Image

    make_image_folder(tmp_path, sizes=((5, 7), (9, 4), (6, 6)))
    with pytest.raises(ValueError, match="size="):
        load_image_folder(tmp_path)
    x, _, _ = load_image_folder(tmp_path, size=(4, 6), mode="L")
    assert x.shape == (3, 1, 4, 6)
    with Image.open(tmp_path / "cat" / "1.png") as image:
        expected = np.asarray(image.convert("L").resize((6, 4), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(x[0, 0], expected)
    assert load_image_folder(tmp_path, size=3)[0].shape == (3, 3, 3, 3)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="sub-folder per class"):
        load_image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(FileNotFoundError, match="No .png"):
        load_image_folder(tmp_path)
    with pytest.raises(ValueError, match="mode="):
        load_image_folder(tmp_path, mode="CMYK")


# -- 8x8 digits ---------------------------------------------------------------------------------------

def test_digits_are_sklearns_images_scaled_to_unit_range():
    from sklearn.datasets import load_digits as sklearn_digits

    x, y = load_digits()
    reference = sklearn_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x[:, 0] * 16, reference.images, rtol=1e-6)
    np.testing.assert_array_equal(y, reference.target)
    assert x.min() == 0.0 and x.max() == 1.0


def test_digits_split_is_fixed_stratified_and_complete():
    x, y = load_digits()
    x_train, y_train, x_test, y_test = load_digits_split(0.25, seed=3)
    assert len(y_train) + len(y_test) == len(y)
    for label in range(10):
        assert (y_test == label).sum() == round(0.25 * (y == label).sum())
    # Together the parts hold every image exactly once.
    flat = lambda a: sorted(map(bytes, a.reshape(len(a), -1)))  # noqa: E731
    assert flat(np.concatenate([x_train, x_test])) == flat(x)
    again = load_digits_split(0.25, seed=3)
    np.testing.assert_array_equal(again[2], x_test)
    assert not np.array_equal(load_digits_split(0.25, seed=4)[3], y_test)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(1.5)
