"""Image dataset readers: MNIST-format IDX files, CIFAR-10 batches, folders of images, 8x8 digits.

Readers return NumPy arrays in PyTorch's layout: images ``(N, C, H, W)`` (MNIST-format sets keep
their published ``(N, 28, 28)``), labels ``int64``. Files are found by :mod:`deepzen.data.paths`.

CIFAR-10's "python version" is a set of pickles. Unpickling runs whatever the file names, so
:func:`load_cifar10` uses a restricted unpickler that resolves only the three NumPy callables an
array pickle needs (``_reconstruct``, ``ndarray``, ``dtype``); everything else in the files is plain
dicts, lists, bytes and ints, which pickle builds without calling anything. A file naming any
other global is rejected as corrupted.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Sequence

import numpy as np

from deepzen.data.paths import DATASETS, DatasetCorruptedError, PathLike, dataset_files, read_bytes

# IDX header: two zero bytes, a type code, the number of dimensions; then one big-endian uint32 per dimension.
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_FOLDER = "cifar-10-batches-py"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MAX_IMAGE_PIXELS = 4096 * 4096  # open_picture refuses larger images before decoding them (a small file can unpack to GBs)
_NUMPY_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy._core.multiarray._reconstruct (numpy.core before 2.0)


def read_idx(path: PathLike) -> np.ndarray:
    """Reads an IDX file (``.gz`` or uncompressed) into an array of its declared type and shape.

    Raises:
        DatasetCorruptedError: bad magic number, or a payload whose size does not match the header.
    """
    raw = read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DatasetCorruptedError(f"{path} is corrupted or not an IDX file: expected a magic number "
                                    f"0x000008NN, received 0x{raw[:4].hex() or 'empty'}.")
    ndim, dtype = raw[3], np.dtype(_IDX_TYPES[raw[2]])
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetCorruptedError(f"{path} is corrupted or truncated: the header of a {ndim}-d IDX file "
                                    f"needs {header} bytes, received {len(raw)}.")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetCorruptedError(f"{path} is corrupted or truncated: a {shape} IDX array needs {expected} "
                                    f"bytes, received {len(raw)}.")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))  # writable copy


def _read_idx_checked(path: Path, ndim: int) -> np.ndarray:
    array = read_idx(path)
    if array.dtype != np.uint8 or array.ndim != ndim:
        raise DatasetCorruptedError(f"{path}: expected a {ndim}-d uint8 IDX array "
                                    f"(magic 0x0000080{ndim}), received {array.ndim}-d {array.dtype}.")
    return array


def load_mnist(data: PathLike | None = None, kind: str = "mnist", *, verify: bool = False):
    """MNIST, or any set published in its format (Fashion-MNIST, KMNIST: same file names).

    Args:
        data: folder holding the four IDX files (default ``$DEEPZEN_DATA/<kind>``); ``.gz`` or
            uncompressed.
        kind: the dataset folder name: ``"mnist"``, ``"fashion-mnist"``, ``"kmnist"`` (or your own).
        verify: check the published sha256 sums (MNIST).

    Returns:
        ``(x_train, y_train, x_test, y_test)``: images uint8 ``(N, 28, 28)`` with pixels 0..255,
        labels int64 ``(N,)``; N = 60000 / 10000 for MNIST.
    """
    files = list(dataset_files(kind, DATASETS.get("mnist").files, data=data, verify=verify).values())
    arrays = []
    for images_path, labels_path in (files[0:2], files[2:4]):
        images, labels = _read_idx_checked(images_path, 3), _read_idx_checked(labels_path, 1)
        if len(images) != len(labels):
            raise DatasetCorruptedError(f"{images_path.name} holds {len(images)} images but {labels_path.name} "
                                        f"holds {len(labels)} labels; expected equal counts.")
        arrays += [images, labels.astype(np.int64)]
    return tuple(arrays)


def from_mnist_digits(make, data: PathLike | None, train_count: int, test_count: int, seed: int, **options) -> tuple:
    """A set drawn from the MNIST digits: ``make(images, labels, count, seed=..., **options)`` draws the
    training part from MNIST's training digits with ``seed`` and the test part from its test digits with
    ``seed + 1``, so that no test digit is seen in training. Returns the two results' items in a row,
    ``(*train, *test)`` (the digit scenes, mask scenes and Moving MNIST clips)."""
    x_train, y_train, x_test, y_test = load_mnist(data)
    return (*make(x_train, y_train, train_count, seed=seed, **options),
            *make(x_test, y_test, test_count, seed=seed + 1, **options))


def random_digit(rng: np.random.Generator, images: np.ndarray, sizes: tuple[int, int]) -> tuple[int, np.ndarray]:
    """Draws one of ``images`` and a side in ``sizes`` (inclusive) with ``rng``, in that order, and returns
    ``(index, the digit resized to side x side)`` (bilinear), for the generated digit scenes."""
    from PIL import Image

    index = int(rng.integers(len(images)))
    side = int(rng.integers(sizes[0], sizes[1] + 1))
    return index, np.asarray(Image.fromarray(images[index]).resize((side, side), Image.BILINEAR))


class _CifarUnpickler(pickle.Unpickler):
    """Builds only containers, bytes, numbers and NumPy arrays (see the module docstring)."""

    _allowed = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        return _NUMPY_RECONSTRUCT if name == "_reconstruct" else getattr(np, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise DatasetCorruptedError(f"{path} is corrupted, truncated or not a CIFAR batch ({error}).") from error
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()} if isinstance(batch, dict) else {}
    images, labels = batch.get("data"), batch.get("labels")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        raise DatasetCorruptedError(f"{path}: expected a dict whose 'data' is a uint8 array (N, 3072), received "
                                    f"{getattr(images, 'shape', type(images).__name__)}.")
    labels = np.asarray(labels if isinstance(labels, list) else [], dtype=np.int64)
    if labels.shape != (len(images),) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DatasetCorruptedError(f"{path}: expected a list of {len(images)} labels in 0..9, received "
                                    f"{len(labels)} labels in {labels.min(initial=0)}..{labels.max(initial=0)}.")
    # Each row is the red plane, then green, then blue, each 32x32 row-major.
    return images.reshape(-1, 3, 32, 32), labels


def load_cifar10(data: PathLike | None = None):
    """CIFAR-10 from its python pickle batches (``cifar-10-batches-py/``).

    Args:
        data: folder holding ``cifar-10-batches-py/`` or the batch files themselves
            (default ``$DEEPZEN_DATA/cifar10``).

    Returns:
        ``(x_train, y_train, x_test, y_test)``: images uint8 ``(N, 3, 32, 32)``, labels int64 ``(N,)``
        (N = 50000 / 10000); class names are :data:`CIFAR10_CLASSES`.
    """
    files = list(dataset_files("cifar10", DATASETS.get("cifar10").files, data=data).values())
    train = [_read_cifar_batch(path) for path in files[:5]]
    x_test, y_test = _read_cifar_batch(files[5])
    return np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test


def write_cifar10_like(folder: PathLike, n: int, *, seed: int = 0) -> Path:
    """Writes a small random set in CIFAR-10's python format, for tests (CIFAR-10 is not shipped).

    Creates ``folder/cifar-10-batches-py/`` with ``data_batch_1..5`` and ``test_batch``, ``n``
    images each: a dict with bytes keys (``b"data"`` uint8 (n, 3072), ``b"labels"`` list of int,
    ``b"batch_label"``, ``b"filenames"``) like the published files, pickled with protocol 4.

    Returns:
        the ``cifar-10-batches-py`` folder.
    """
    rng = np.random.default_rng(seed)
    out = Path(folder) / _CIFAR_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    for name in (*_CIFAR_TRAIN, "test_batch"):
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}
        with open(out / name, "wb") as f:
            pickle.dump(batch, f, protocol=4)  # 5 would pickle arrays through another NumPy callable
    return out


def load_image_folder(path: PathLike, size: int | Sequence[int] | None = None, *, mode: str = "RGB"):
    """Images in one sub-folder per class (``path/cat/1.png``, ``path/dog/a.jpg``, ...).

    Decoded with Pillow (installed with matplotlib). Class indices follow the sorted folder names.

    Args:
        path: the folder whose sub-folders are the classes.
        size: resize every image to ``(height, width)`` (an int means square); ``None`` requires
            all images to share one size.
        mode: Pillow mode to convert to: ``"RGB"`` (3 channels) or ``"L"`` (grayscale, 1 channel).

    Returns:
        ``(x, y, class_names)``: x uint8 ``(N, C, H, W)``, y int64 ``(N,)``, class_names list of str.
    """
    from PIL import Image

    if mode not in ("RGB", "L"):
        raise ValueError(f"Expected mode='RGB' or 'L'. Received: mode={mode!r}")
    root = Path(path)
    class_names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not class_names:
        raise FileNotFoundError(f"Expected {root} to hold one sub-folder per class; found none.")
    target = (size, size) if isinstance(size, int) else tuple(size) if size is not None else None
    images, labels = [], []
    for index, name in enumerate(class_names):
        for file in sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            with Image.open(file) as image:
                image = image.convert(mode)
                if target is not None:
                    image = image.resize((target[1], target[0]), Image.Resampling.BILINEAR)  # PIL takes (W, H)
                pixels = np.asarray(image)
            if images and pixels.shape != images[0].shape:
                raise ValueError(f"{file} is {pixels.shape[1]}x{pixels.shape[0]} but earlier images are "
                                 f"{images[0].shape[1]}x{images[0].shape[0]}; pass size=(height, width) to resize.")
            images.append(pixels)
            labels.append(index)
    if not images:
        raise FileNotFoundError(f"No {'/'.join(IMAGE_SUFFIXES)} images in the class folders of {root}.")
    x = np.stack(images)  # (N, H, W) or (N, H, W, 3)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # (N, C, H, W)
    return np.ascontiguousarray(x), np.asarray(labels, dtype=np.int64), class_names


def open_picture(source, mode: str = "RGB"):
    """One image (a file path, or the bytes of a PNG/JPEG/... file) as a decoded Pillow image in ``mode``
    ("RGB", "L": grey) at its own size.

    Raises:
        ValueError: the data is not an image Pillow can read, or it has more than ``MAX_IMAGE_PIXELS``
            pixels (checked before decoding: a small file can unpack to gigabytes).
    """
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"The image is {image.width}x{image.height}; at most {MAX_IMAGE_PIXELS} pixels "
                                 f"are read")
            return image.convert(mode)
    except UnidentifiedImageError:
        raise ValueError("The data is not an image Pillow can read: expected a PNG, JPEG, BMP or GIF file") from None
    except OSError as error:  # a truncated or corrupt file of a known format
        raise ValueError(f"Cannot read the image: {error}. Expected a PNG, JPEG, BMP or GIF file") from None


def open_pictures(paths: Sequence[PathLike], mode: str = "RGB", reader: str = "this run") -> list:
    """Image files as decoded Pillow images (:func:`open_picture`), all read before any is used.

    Raises:
        FileNotFoundError: a path is not a file (the message says ``reader`` predicts on image files).
        ValueError: a file is not an image; the message names it.
    """
    pictures = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"No image at {path}: {reader} predicts on image files (.png, .jpg, ...)")
        try:
            pictures.append(open_picture(path, mode))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    return pictures


def read_image(source, shape: Sequence[int]) -> np.ndarray:
    """One image (a file path, or the bytes of a PNG/JPEG/... file) as a ``(C, H, W)`` float32 array in [0, 1],
    converted to ``C`` channels (1: grey, 3: RGB) and resized (bilinear) to the model's input ``shape``.

    Raises:
        ValueError: ``shape`` is not an image shape, or the data is not an image :func:`open_picture` reads.
    """
    from PIL import Image

    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ValueError(f"The model's input is {tuple(shape)}, not an image (1 or 3, H, W)")
    channels, height, width = shape
    image = open_picture(source, "L" if channels == 1 else "RGB").resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[None] if channels == 1 else array.transpose(2, 0, 1)  # (C, H, W)


def load_digits():
    """scikit-learn's embedded 8x8 handwritten digits (1797 images; needs no download).

    Returns:
        ``(x, y)``: x float32 ``(1797, 1, 8, 8)`` scaled from 0..16 to 0..1, y int64 ``(1797,)``.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    return x, digits.target.astype(np.int64)


def load_digits_split(test_fraction: float = 0.2, seed: int = 0):
    """The 8x8 digits with a fixed stratified train/test split (same ``seed`` -> same split).

    Returns:
        ``(x_train, y_train, x_test, y_test)``; each class contributes ``round(test_fraction * count)``
        images to the test set.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"Expected 0 < test_fraction < 1. Received: test_fraction={test_fraction}")
    x, y = load_digits()
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        test[members[:round(test_fraction * len(members))]] = True
    return x[~test], y[~test], x[test], y[test]
