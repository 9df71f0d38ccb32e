"""The prediction server: concurrent answers, micro-batching, every malformed request refused with a
4xx saying what was expected (and the server still serving), and the bounded loopback load test."""

from __future__ import annotations

import http.client
import importlib.util
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import deepzen
from deepzen.layers import Dense, Embedding, Flatten
from deepzen.models import Sequential
from deepzen.serving import ModelServer

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def model():
    deepzen.seed(0)
    model = Sequential([Dense(8, input_shape=(2, 3), activation="tanh"), Dense(4)])  # (N, 2, 3) -> (N, 2, 4)
    model.build()
    return model


@pytest.fixture(scope="module")
def server(model):
    with ModelServer(model, port=0, max_batch_size=16, max_body_bytes=20_000) as server:
        yield server


def call(server, method, path, body=None, headers=None):
    host, port = server.httpd.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def reference(model, inputs):
    with torch.no_grad():
        return model(torch.tensor(inputs, dtype=torch.float32)).numpy()


def test_binds_to_loopback_by_default(server):
    assert server.httpd.server_address[0] == "127.0.0.1"


def test_health_and_metadata_describe_the_model(server):
    assert call(server, "GET", "/health")[1]["status"] == "ok"
    status, metadata = call(server, "GET", "/metadata")
    assert status == 200
    assert metadata["input"] == {"shape": [None, 2, 3], "dtype": "float32"}
    assert metadata["output"] == {"shape": [None, 2, 4], "dtype": "float32"}
    assert metadata["limits"] == {"max_batch_size": 16, "max_body_bytes": 20_000}


def test_concurrent_requests_each_get_their_own_correct_answer(server, model):
    rng = np.random.default_rng(0)
    requests = [rng.normal(size=(1 + i % 3, 2, 3)).round(4).tolist() for i in range(24)]
    answers = [None] * len(requests)

    def client(index):
        answers[index] = call(server, "POST", "/predict", {"inputs": requests[index]}, JSON)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for inputs, (status, answer) in zip(requests, answers):
        assert status == 200
        assert np.allclose(answer["outputs"], reference(model, inputs), atol=1e-5)
        assert "classes" not in answer  # (2, 4) per sample: not a vector of class scores


def test_requests_arriving_together_share_one_model_call(model):
    with ModelServer(model, port=0, max_wait_ms=2000) as server:
        barrier = threading.Barrier(4)
        answers = []

        def client():
            barrier.wait()
            answers.append(call(server, "POST", "/predict", {"inputs": [[[1, 2, 3], [4, 5, 6]]]}, JSON))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        health = call(server, "GET", "/health")[1]
    assert [status for status, _ in answers] == [200] * 4
    assert health["requests"] == 4 and health["largest_batch_requests"] >= 2 and health["batches"] < 4


SAMPLE = [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]


@pytest.mark.parametrize("method, path, body, headers, status, message", [
    ("POST", "/predict", "{not json", JSON, 400, "not valid JSON"),
    ("POST", "/predict", b"\xff\xfe", JSON, 400, "UTF-8"),
    ("POST", "/predict", [SAMPLE], JSON, 400, "Expected a JSON object"),
    ("POST", "/predict", {"inputs": [SAMPLE], "temperature": 1}, JSON, 400, "Unknown field(s): 'temperature'"),
    ("POST", "/predict", {"input": [SAMPLE]}, JSON, 400, "Unknown field(s): 'input'"),
    ("POST", "/predict", {}, JSON, 400, "Missing field \"inputs\""),
    ("POST", "/predict", {"inputs": []}, JSON, 422, "an empty list"),
    ("POST", "/predict", {"inputs": "abc"}, JSON, 422, "a list of samples, each of shape [2, 3]"),
    ("POST", "/predict", {"inputs": SAMPLE}, JSON, 422, "wrap a single sample in a list"),
    ("POST", "/predict", {"inputs": [[[1, 2], [3, 4]]]}, JSON, 422, "Received: shape [1, 2, 2]"),
    ("POST", "/predict", {"inputs": [[[1, 2, 3], [4, 5]]]}, JSON, 422, "uneven length"),
    ("POST", "/predict", {"inputs": [[["a", "b", "c"], ["d", "e", "f"]]]}, JSON, 422, "Received: strings"),
    ("POST", "/predict", {"inputs": [[[True, False, True], [True, True, True]]]}, JSON, 422, "Received: booleans"),
    ("POST", "/predict", {"inputs": [[[None, 1, 2], [3, 4, 5]]]}, JSON, 422, "numbers only"),
    ("POST", "/predict", '{"inputs": [[[NaN, 1, 2], [3, 4, 5]]]}', JSON, 400, "NaN is not a number JSON allows"),
    ("POST", "/predict", {"inputs": [[[1e300, 1, 2], [3, 4, 5]]]}, JSON, 422, "too large for float32"),
    ("POST", "/predict", {"inputs": [SAMPLE] * 17}, JSON, 422, "At most 16 samples per request"),
    ("POST", "/predict", {"inputs": [SAMPLE]}, {"Content-Type": "text/plain"}, 415, "Expected Content-Type: application/json"),
    ("POST", "/predict", {"inputs": [SAMPLE]}, {}, 415, "Received: none"),
    ("POST", "/predict", json.dumps({"inputs": [SAMPLE] * 600}), JSON, 413, "the limit is 20000 bytes"),
    ("POST", "/predictions", {"inputs": [SAMPLE]}, JSON, 404, "No endpoint '/predictions'"),
    ("GET", "/", None, None, 404, "Expected POST /predict, GET /health or GET /metadata"),
    ("GET", "/predict", None, None, 405, "Use POST /predict"),
    ("POST", "/health", b"", JSON, 405, "Use GET /health"),
    ("DELETE", "/predict", None, None, 405, "Use POST /predict"),
])
def test_malformed_requests_get_a_4xx_saying_what_was_expected_and_the_server_keeps_serving(
        server, model, method, path, body, headers, status, message):
    received, answer = call(server, method, path, body, headers)
    assert received == status and 400 <= received < 500
    assert message in answer["error"] and answer["status"] == status
    ok, good = call(server, "POST", "/predict", {"inputs": [SAMPLE]}, JSON)
    assert ok == 200 and np.allclose(good["outputs"], reference(model, [SAMPLE]), atol=1e-5)


def test_a_connection_kept_alive_survives_a_refused_request(server):
    host, port = server.httpd.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    for body, expected in (("{bad", 400), (json.dumps({"inputs": [SAMPLE]}), 200), ("[]", 400),
                           (json.dumps({"inputs": [SAMPLE]}), 200)):
        connection.request("POST", "/predict", body=body, headers=JSON)
        response = connection.getresponse()
        response.read()
        assert response.status == expected
    connection.close()


def test_a_request_without_content_length_is_refused(server):
    host, port = server.httpd.server_address[:2]
    with socket.create_connection((host, port), timeout=30) as raw:
        raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n0\r\n\r\n")
        reply = raw.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 411") and "Content-Length" in reply


def test_an_integer_input_model_checks_ids_against_the_vocabulary():
    deepzen.seed(0)
    classifier = Sequential([Embedding(20, 4, input_shape=(5,)), Flatten(),
                             Dense(3)])
    classifier.build()
    with ModelServer(classifier, port=0) as server:
        assert call(server, "GET", "/metadata")[1]["input"] == {"shape": [None, 5], "dtype": "int64",
                                                                "vocabulary_size": 20}
        status, answer = call(server, "POST", "/predict", {"inputs": [[1, 2, 3, 4, 19]]}, JSON)
        expected = classifier(torch.tensor([[1, 2, 3, 4, 19]])).detach().numpy()
        assert status == 200 and np.allclose(answer["outputs"], expected, atol=1e-6)
        assert answer["classes"] == [int(expected.argmax())]
        for inputs, message in (([[1, 2, 3, 4, 20]], "Ids must be in [0, 20)"), ([[-1, 2, 3, 4, 5]], "Ids must be"),
                                ([[1.5, 2, 3, 4, 5]], "integer ids")):
            status, answer = call(server, "POST", "/predict", {"inputs": inputs}, JSON)
            assert status == 422 and message in answer["error"]


def test_a_model_failure_is_a_500_for_that_request_only(model):
    class Fragile(torch.nn.Module):
        input_spec = model.input_spec

        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            if bool((x > 100).any()):
                raise RuntimeError("input out of the model's range")
            return self.inner(x)

    with ModelServer(Fragile(), port=0) as server:
        status, answer = call(server, "POST", "/predict", {"inputs": [[[500, 0, 0], [0, 0, 0]]]}, JSON)
        assert status == 500 and "input out of the model's range" in answer["error"]
        assert call(server, "POST", "/predict", {"inputs": [SAMPLE]}, JSON)[0] == 200


def load_benchmark():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_load.py"
    spec = importlib.util.spec_from_file_location("serve_load", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bounded_load_test_loses_no_request_and_answers_all_correctly(capsys):
    benchmark = load_benchmark()
    code = benchmark.main(["--requests", "240", "--concurrency", "8", "--max-seconds", "60",
                           "--samples-per-request", "2"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    assert report["sent"] == report["answered"] == report["correct"] == 240
    assert report["lost"] == report["wrong"] == report["stuck_clients"] == 0 and report["statuses"] == {"200": 240}
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert report["throughput_rps"] > 0 and report["server"]["largest_batch_requests"] >= 2


def test_deepzen_serve_answers_and_stops_on_ctrl_c(digits_run):
    import signal
    import subprocess
    import urllib.request

    from subprocesses import cli_environment, deepzen_command

    process = subprocess.Popen(deepzen_command("serve", str(digits_run), "--port", "0"), env=cli_environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = process.stdout.readline()
        url = banner.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/metadata", timeout=30) as response:
            metadata = json.loads(response.read())
        assert metadata["recipe"] == "digits-cnn" and metadata["input"]["shape"] == [None, 1, 8, 8]
        request = urllib.request.Request(url + "/predict", json.dumps({"inputs": [np.zeros((1, 8, 8)).tolist()]}).encode(),
                                         headers=JSON)
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert len(answer["outputs"][0]) == 10 and 0 <= answer["classes"][0] < 10
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "Stopped." in out
