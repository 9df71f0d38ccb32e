"""Fixtures of the serving tests: tiny models, in-process apps (TestClient, no network), a real uvicorn
server in a thread for what only a socket shows (framing, keep-alive, uvicorn's own parse errors)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'deepzen[serve]'")

import deepzen  # noqa: E402
from deepzen.layers import Dense  # noqa: E402
from deepzen.models import Sequential  # noqa: E402
from deepzen.serving.app import create_app  # noqa: E402
from deepzen.serving.servables import TensorServable  # noqa: E402
from deepzen.serving.settings import ServeSettings  # noqa: E402

JSON = {"Content-Type": "application/json"}


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


def client(servable):
    """A TestClient over the app (use as a context manager: the lifespan starts the model's worker)."""
    from fastapi.testclient import TestClient

    return TestClient(create_app(servable), raise_server_exceptions=False)


@pytest.fixture
def tensor_client(small_model):
    with client(TensorServable(small_model, ServeSettings(max_samples=16, max_body_bytes=20_000))) as test_client:
        yield test_client


class ThreadedServer:
    """uvicorn on 127.0.0.1 and a free port, in a background thread of this process."""

    def __init__(self, servable):
        from deepzen.serving.server import ModelServer

        self.server = ModelServer(servable)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ThreadedServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while self.server.url is None:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        host, port = self.server.url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        return self

    def __exit__(self, *error) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def raw(self, request: bytes, timeout: float = 10.0) -> bytes:
        """Sends raw bytes on a fresh connection and returns everything the server sends until it closes
        the connection or stays silent for 0.5 s."""
        with socket.create_connection(self.address, timeout=timeout) as connection:
            connection.sendall(request)
            return read_all(connection)


def read_all(connection: socket.socket, quiet: float = 0.5) -> bytes:
    connection.settimeout(quiet)
    chunks = []
    while True:
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def responses(raw: bytes) -> list[tuple[int, dict]]:
    """The (status, JSON body) of each HTTP/1.1 response in ``raw`` (bodies framed by Content-Length)."""
    answers = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        body, raw = rest[:length], rest[length:]
        answers.append((status, json.loads(body) if body else None))
    return answers


@pytest.fixture(scope="session")
def real_server(digits_model):
    with ThreadedServer(TensorServable(digits_model, ServeSettings(port=0, max_body_bytes=100_000))) as server:
        yield server
