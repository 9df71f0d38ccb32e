"""Helpers of the serving tests: an in-process client, a real uvicorn server in a thread, raw HTTP reading,
and a tiny text-classifier run."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np

from deepzen import cli
from deepzen.serving.app import create_app

JSON = {"Content-Type": "application/json"}
GOOD, BAD = ["great", "superb", "fine", "lovely"], ["awful", "dull", "poor", "bad"]
FILLER = ["movie", "plot", "the", "a"]


def train(recipe: str, folder, **settings) -> None:
    """``deepzen train RECIPE --run-dir folder --set key=value ...`` in this process."""
    arguments = ["train", recipe, "--run-dir", str(folder)]
    for key, value in settings.items():
        arguments += ["--set", f"{key}={value}"]
    assert cli.main(arguments) == 0


def client(servable):
    """A TestClient over the app (use as a context manager: the lifespan starts the model's worker)."""
    from fastapi.testclient import TestClient

    return TestClient(create_app(servable), raise_server_exceptions=False)


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


def make_classifier_run(folder):
    """A tiny mr-textcnn run on a separable label<TAB>text file (label 1: a good word) in ``folder/mr``."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(150):
        label = i % 2
        words = list(rng.choice(GOOD if label else BAD, 2)) + list(rng.choice(FILLER, 3))
        lines.append(f"{label}\t{' '.join(rng.permutation(words))}\n")
    (folder / "reviews.tsv").write_text("".join(lines))
    train("mr-textcnn", folder / "mr", data=folder / "reviews.tsv", folds=3, max_folds=1, epochs=4,
          learning_rate=0.01, embedding_dim=16, num_filters=8, batch_size=20, seed=3)
    return folder / "mr"


