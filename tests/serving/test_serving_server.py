"""What only a real socket shows, on uvicorn: requests uvicorn itself cannot parse get the app's JSON 400,
bodies sent with GET or PUT are never read as the next request, keep-alive survives refusals, HEAD has no
body; and ``deepzen serve`` finishes the request in flight on SIGTERM before it stops."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
from serving_helpers import JSON, read_all, responses

IMAGE = np.zeros((1, 8, 8)).tolist()


@pytest.mark.parametrize("path", ["/predict", "/no/such/path"])
@pytest.mark.parametrize("length", ["abc", "9" * 5000, "\u0663".encode().decode("latin-1"), "-5", "1 2"])
def test_an_unparsable_content_length_gets_a_json_400_even_on_an_unknown_path(real_server, path, length):
    request = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
               "{}").encode("latin-1")
    [(status, answer)] = responses(real_server.raw(request))
    assert status == 400 and answer["status"] == 400 and "numeric Content-Length" in answer["error"]


@pytest.mark.parametrize("method, path, status", [("GET", "/health", 200), ("PUT", "/predict", 405),
                                                  ("GET", "/nowhere", 404)])
def test_a_body_sent_with_get_or_put_is_never_read_as_the_next_request(real_server, method, path, status):
    smuggled = b"GET /metadata HTTP/1.1\r\nHost: x\r\n\r\n"
    request = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(smuggled)}\r\n\r\n").encode() + smuggled
    request += b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n"
    answers = responses(real_server.raw(request))
    assert [s for s, _ in answers] == [status, 200]  # two requests, two answers: the body was a body
    assert answers[1][1] == {"ready": True, "kind": "tensor"}


def test_head_has_headers_and_no_body(real_server):
    reply = real_server.raw(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, rest = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 15" in head.lower()
    assert rest.startswith(b"HTTP/1.1 200")  # the next answer follows at once: HEAD's carried no body
    options = real_server.raw(b"OPTIONS /predict HTTP/1.1\r\nHost: x\r\n\r\n")
    assert options.startswith(b"HTTP/1.1 204") and b"allow: options, post" in options.lower()


def test_a_connection_kept_alive_survives_refused_requests(real_server):
    connection = http.client.HTTPConnection(*real_server.address, timeout=30)
    for body, expected in (("{bad", 400), (json.dumps({"inputs": [IMAGE]}), 200), ("[]", 400),
                           ("[" * 500 + "]" * 500, 400), (json.dumps({"inputs": [IMAGE]}), 200)):
        connection.request("POST", "/predict", body=body, headers=JSON)
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == expected and ("outputs" in answer) == (expected == 200)
    connection.close()


def test_a_chunked_body_over_the_limit_is_refused(real_server):
    with socket.create_connection(real_server.address, timeout=30) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b" " * 60_000
        for _ in range(2):
            connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        connection.sendall(b"0\r\n\r\n")
        [(status, answer)] = responses(read_all(connection))
    assert status == 413 and "over the limit of 100000 bytes" in answer["error"]


def in_flight(url: str) -> int:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    return int(text.split("\ndeepzen_requests_in_flight ")[1].split()[0])


def test_deepzen_serve_finishes_the_request_in_flight_on_sigterm(digits_run):
    from deepzen.training.serialization import load_model

    environment = {"PYTHONPATH": "", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen([sys.executable, "-m", "deepzen.cli", "serve", str(digits_run), "--port", "0",
                                "--max-wait-ms", "1500"], env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        banner = process.stdout.readline()
        url = banner.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and "(tensor)" in banner
        with urllib.request.urlopen(url + "/metadata", timeout=30) as response:
            metadata = json.loads(response.read())
        assert metadata["recipe"] == "digits-cnn" and metadata["input"]["shape"] == [None, 1, 8, 8]
        answers = []
        request = urllib.request.Request(url + "/predict", json.dumps({"inputs": [IMAGE]}).encode(), headers=JSON)
        sender = threading.Thread(target=lambda: answers.append(urllib.request.urlopen(request, timeout=30).read()))
        started = time.monotonic()
        sender.start()
        while in_flight(url) < 2:  # the /metrics request itself, and the prediction waiting in its batch for 1.5 s
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        sender.join(timeout=30)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert time.monotonic() - started >= 1.4  # the answer came after the batch's wait, not before SIGTERM
    answer = json.loads(answers[0])
    model = load_model(digits_run / "model.dz", compile=False).eval()
    assert answer["classes"] == [int(model.predict(np.asarray([IMAGE], np.float32)).argmax())]
    assert process.returncode == 0 and "Stopped." in out, err


def test_without_the_serve_extra_the_error_names_it(digits_run, monkeypatch, capsys):
    from deepzen import cli

    for name in ("deepzen.serving.app", "deepzen.serving.server"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # an import of fastapi now fails as if not installed
    assert cli.main(["serve", str(digits_run)]) == 2
    assert "deepzen serve needs the serve extra (pip install 'deepzen[serve]')" in capsys.readouterr().err
