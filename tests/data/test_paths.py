import doctest
import gzip
import hashlib
import shutil

import pytest

from deepzen.data import paths
from deepzen.data.paths import (DATASETS, DatasetCorruptedError, DatasetNotFoundError, data_home, dataset_files,
                                dataset_status, read_bytes, read_text, sha256sum, verify_sha256)


def test_doctests():
    assert doctest.testmod(paths).failed == 0


def test_data_home_reads_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPZEN_DATA", str(tmp_path))
    assert data_home() == tmp_path
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DEEPZEN_DATA", "~/datasets")
    assert data_home() == tmp_path / "datasets"


def test_data_home_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("DEEPZEN_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_home() == tmp_path / ".cache" / "deepzen"


def test_dataset_files_finds_files_under_the_data_home_or_a_given_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPZEN_DATA", str(tmp_path / "home"))
    (tmp_path / "home" / "mr").mkdir(parents=True)
    (tmp_path / "home" / "mr" / "rt-polarity.pos").write_text("a\n")
    assert dataset_files("mr", ["rt-polarity.pos"]) == {"rt-polarity.pos": tmp_path / "home" / "mr" / "rt-polarity.pos"}

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "rt-polarity.pos").write_text("b\n")
    found = dataset_files("mr", ["rt-polarity.pos"], data=tmp_path / "mine")
    assert found["rt-polarity.pos"] == tmp_path / "mine" / "rt-polarity.pos"


def test_alternative_names_are_returned_under_the_canonical_name(tmp_path):
    (tmp_path / "train.en").write_text("x\n")
    (tmp_path / "train.de.gz").write_bytes(gzip.compress(b"y\n"))
    found = dataset_files("multi30k", [("train.en.gz", "train.en"), ("train.de.gz", "train.de")], data=tmp_path)
    assert found == {"train.en.gz": tmp_path / "train.en", "train.de.gz": tmp_path / "train.de.gz"}


def test_missing_files_name_the_files_the_folder_the_source_and_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPZEN_DATA", str(tmp_path))
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "stsa.binary.dev").write_text("1 good\n")
    with pytest.raises(DatasetNotFoundError) as info:
        dataset_files("sst2", ["stsa.binary.train", "stsa.binary.dev", "stsa.binary.test"])
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "stsa.binary.train" in message and "stsa.binary.test" in message
    assert "stsa.binary.dev" not in message  # present files are not reported missing
    assert str(tmp_path / "sst2") in message
    assert "DEEPZEN_DATA" in message and str(tmp_path) in message
    assert DATASETS.get("sst2").source in message


def test_missing_message_for_a_given_folder_and_unknown_dataset(monkeypatch, tmp_path):
    monkeypatch.delenv("DEEPZEN_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError, match="data=") as info:
        dataset_files("my-set", [("a.gz", "a")], data=tmp_path / "nowhere")
    assert "missing a.gz in" in str(info.value)
    assert "unset" in str(info.value)


def test_dataset_status_reports_complete_folders_only(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPZEN_DATA", str(tmp_path))
    for name in ("rt-polarity.pos", "rt-polarity.neg"):
        (tmp_path / "mr").mkdir(exist_ok=True)
        (tmp_path / "mr" / name).write_text("")
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "stsa.binary.train").write_text("")
    status = dataset_status()
    assert set(status) == set(DATASETS.names())
    assert status["mr"] is True
    assert status["sst2"] is False
    assert not any(value for name, value in status.items() if name != "mr")


def test_sha256_helpers_and_corruption_error(tmp_path):
    payload = bytes(range(256)) * 5000  # > 1 MiB so the chunked read loops
    file = tmp_path / "blob"
    file.write_bytes(payload)
    expected = hashlib.sha256(payload).hexdigest()
    assert sha256sum(file) == expected
    verify_sha256(file, expected.upper())
    file.write_bytes(payload[:-1] + b"\x00")
    with pytest.raises(DatasetCorruptedError, match="corrupted") as info:
        verify_sha256(file, expected)
    assert expected in str(info.value)


def test_verify_checks_published_sums_on_a_temp_copy(real_dataset, tmp_path):
    source = real_dataset("mnist") / "t10k-labels-idx1-ubyte.gz"
    shutil.copy(source, tmp_path / source.name)
    dataset_files("mnist", [source.name], data=tmp_path, verify=True)
    data = bytearray((tmp_path / source.name).read_bytes())
    data[100] ^= 0xFF
    (tmp_path / source.name).write_bytes(bytes(data))
    with pytest.raises(DatasetCorruptedError, match="corrupted"):
        dataset_files("mnist", [source.name], data=tmp_path, verify=True)
    dataset_files("mnist", [source.name], data=tmp_path)  # no check unless asked


def test_every_registered_sum_matches_the_real_files(real_dataset):
    for name, info in DATASETS.items():
        if info.sha256:
            folder = real_dataset(name)
            found = dataset_files(name, list(info.sha256), verify=True)
            assert set(found.values()) == {folder / file for file in info.sha256}


def test_read_bytes_decompresses_and_reports_truncated_gzip(tmp_path):
    payload = b"hello\n" * 1000
    (tmp_path / "f.gz").write_bytes(gzip.compress(payload))
    assert read_bytes(tmp_path / "f.gz") == payload
    (tmp_path / "f.txt").write_bytes(payload)
    assert read_bytes(tmp_path / "f.txt") == payload
    (tmp_path / "cut.gz").write_bytes(gzip.compress(payload)[:-20])
    with pytest.raises(DatasetCorruptedError, match="truncated"):
        read_bytes(tmp_path / "cut.gz")
    (tmp_path / "junk.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetCorruptedError, match="gzip"):
        read_bytes(tmp_path / "junk.gz")


def test_read_text_names_the_encoding_on_decode_errors(tmp_path):
    (tmp_path / "latin.txt").write_bytes("café\n".encode("latin-1"))
    assert read_text(tmp_path / "latin.txt", "latin-1") == "café\n"
    with pytest.raises(DatasetCorruptedError, match="encoding="):
        read_text(tmp_path / "latin.txt")
