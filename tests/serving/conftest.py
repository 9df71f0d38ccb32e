"""Fixtures of the serving tests: tiny models, in-process apps (TestClient, no network), a real uvicorn
server in a thread for what only a socket shows (framing, keep-alive, uvicorn's own parse errors)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'deepzen[serve]'")

import deepzen  # noqa: E402
from deepzen.layers import Dense  # noqa: E402
from deepzen.models import Sequential  # noqa: E402
from deepzen.serving.servables import TensorServable  # noqa: E402
from deepzen.serving.settings import ServeSettings  # noqa: E402
from serving_helpers import ThreadedServer, client  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def serving_threads():
    """Tiny models on one intra-op thread (as `deepzen serve` runs them)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_model():
    """(N, 2, 3) -> (N, 2, 4): a model whose output is not a vector of class scores."""
    deepzen.seed(0)
    model = Sequential([Dense(8, input_shape=(2, 3), activation="tanh"), Dense(4)])
    model.build()
    return model


@pytest.fixture(scope="session")
def digits_model():
    """The digits CNN (untrained, seeded): (N, 1, 8, 8) -> 10 scores."""
    from deepzen.vision.recipes import digits_cnn_model

    deepzen.seed(0)
    model = digits_cnn_model(filters=4)
    model.build()
    return model.eval()


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A run folder of the digits CNN (the demo recipe), trained for 3 epochs of 4 filters in this process."""
    from deepzen import cli

    folder = tmp_path_factory.mktemp("runs") / "digits"
    code = cli.main(["train", "digits-cnn", "--run-dir", str(folder), "--set", "epochs=3", "--set", "filters=4",
                     "--set", "verbose=0"])
    assert code == 0
    return folder


@pytest.fixture(scope="session")
def detection_run(real_dataset, tmp_path_factory):
    """A run folder of mnist-detection: a tiny detector trained for 2 epochs on 48 scenes in this process."""
    from serving_helpers import train

    real_dataset("mnist")
    folder = tmp_path_factory.mktemp("runs") / "detection"
    train("mnist-detection", folder, train_scenes=48, test_scenes=8, epochs=2, width=4, pyramid_channels=8, verbose=0)
    return folder


@pytest.fixture(scope="session")
def segmentation_run(real_dataset, tmp_path_factory):
    """A run folder of mnist-segmentation: a tiny U-Net hardly trained (1 epoch on 64 scenes at a rate of 1e-6),
    so that its masks vary from pixel to pixel (a little training calls every pixel background)."""
    from serving_helpers import train

    real_dataset("mnist")
    folder = tmp_path_factory.mktemp("runs") / "segmentation"
    train("mnist-segmentation", folder, train_scenes=64, test_scenes=16, epochs=1, filters=4, depth=2,
          batch_size=16, learning_rate=1e-6, verbose=0)
    return folder


@pytest.fixture
def tensor_client(small_model):
    with client(TensorServable(small_model, ServeSettings(max_samples=16, max_body_bytes=20_000))) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def real_server(digits_model):
    with ThreadedServer(TensorServable(digits_model, ServeSettings(port=0, max_body_bytes=100_000))) as server:
        yield server
