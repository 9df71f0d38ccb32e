"""The app in process (TestClient, no network): answers equal the model's own outputs, concurrent requests
share model calls, every malformed request is a 4xx ``{"error": ...}`` saying what was expected (and the
server keeps serving), the listed attacks, the limits, the API key, CORS, OPTIONS/HEAD and /metrics."""

from __future__ import annotations

import json
import re
import threading
import time

import numpy as np
import pytest
import torch
from serving_helpers import JSON, client

import deepzen
from deepzen.layers import Dense, Embedding, Flatten
from deepzen.models import Sequential
from deepzen.serving.servables import TensorServable
from deepzen.serving.settings import ServeSettings

SAMPLE = [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]


def strict_json(constant):
    raise AssertionError(f"{constant} is not JSON")


def reference(model, inputs):
    with torch.no_grad():
        return model(torch.tensor(inputs, dtype=torch.float32)).numpy()


def test_health_ready_and_metadata_describe_the_model(tensor_client):
    assert tensor_client.get("/health").json() == {"status": "ok"}
    assert tensor_client.get("/ready").json() == {"ready": True, "kind": "tensor"}
    metadata = tensor_client.get("/metadata").json()
    assert metadata["input"] == {"shape": [None, 2, 3], "dtype": "float32"}
    assert metadata["output"] == {"shape": [None, 2, 4], "dtype": "float32", "classes": None}
    assert metadata["limits"]["max_samples"] == 16 and metadata["limits"]["max_body_bytes"] == 20_000
    assert metadata["auth"] is False and metadata["accepts_images"] is False


def test_ready_is_false_before_the_worker_starts(small_model):
    test_client = client(TensorServable(small_model, ServeSettings()))  # not entered: the lifespan has not run
    response = test_client.get("/ready")
    assert response.status_code == 503 and "not running" in response.json()["error"]


def test_the_request_model_is_generated_from_the_input_spec(tensor_client):
    schema = tensor_client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["TensorRequest"]
    samples = request["properties"]["inputs"]
    assert samples["minItems"] == 1 and samples["maxItems"] == 16
    rows = samples["items"]
    assert (rows["minItems"], rows["maxItems"]) == (2, 2)                 # shape (2, 3)
    assert (rows["items"]["minItems"], rows["items"]["maxItems"]) == (3, 3)
    assert rows["items"]["items"]["type"] == "number" and rows["items"]["items"]["maximum"] == 1e6
    assert request["additionalProperties"] is False
    operation = schema["paths"]["/predict"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/TensorRequest")
    assert "/predict/image" not in schema["paths"]  # (2, 3) is not an image
    docs = tensor_client.get("/docs")
    assert docs.status_code == 200 and "http" not in docs.text.split("<body>")[1]  # its files come from the server
    script = tensor_client.get("/docs/swagger-ui-bundle.js")
    assert script.headers["content-type"].startswith("text/javascript") and "SwaggerUIBundle" in script.text


def test_concurrent_requests_each_get_their_own_correct_answer(tensor_client, small_model):
    rng = np.random.default_rng(0)
    requests = [rng.normal(size=(1 + i % 3, 2, 3)).round(4).tolist() for i in range(24)]
    answers = [None] * len(requests)

    def send(index):
        answers[index] = tensor_client.post("/predict", json={"inputs": requests[index]})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for inputs, response in zip(requests, answers):
        assert response.status_code == 200
        assert np.allclose(response.json()["outputs"], reference(small_model, inputs), atol=1e-5)
        assert "classes" not in response.json()  # (2, 4) per sample: not a vector of class scores


def test_requests_arriving_together_share_one_model_call(small_model):
    calls = []

    class Counting(TensorServable):
        def run_batch(self, key, payloads):
            calls.append(len(payloads))
            return super().run_batch(key, payloads)

    with client(Counting(small_model, ServeSettings(max_wait_ms=1500))) as test_client:
        calls.clear()  # the probe at construction
        barrier = threading.Barrier(4)
        answers = []

        def send():
            barrier.wait()
            answers.append(test_client.post("/predict", json={"inputs": [SAMPLE]}).status_code)

        threads = [threading.Thread(target=send) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        metrics = test_client.get("/metrics").text
    assert answers == [200] * 4 and sum(calls) == 4 and len(calls) < 4 and max(calls) >= 2
    assert f"deepzen_batch_samples_count {len(calls)}" in metrics


def test_a_classifier_answers_classes_and_probabilities(digits_model):
    images = np.random.default_rng(1).random((3, 1, 8, 8)).round(3)
    with client(TensorServable(digits_model, ServeSettings())) as test_client:
        answer = test_client.post("/predict", json={"inputs": images.tolist()}).json()
    scores = reference(digits_model, images)
    assert np.allclose(answer["outputs"], scores, atol=1e-5)
    assert answer["classes"] == scores.argmax(axis=1).tolist()
    assert np.allclose(answer["probabilities"], torch.softmax(torch.tensor(scores), dim=1).numpy(), atol=1e-6)


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
    ("POST", "/predict", {"inputs": [[[True, 1, 2], [3, 4, 5]]]}, JSON, 422, "valid number"),
    ("POST", "/predict", {"inputs": [[[None, 1, 2], [3, 4, 5]]]}, JSON, 422, "numbers only"),
    ("POST", "/predict", '{"inputs": [[[NaN, 1, 2], [3, 4, 5]]]}', JSON, 400, "NaN is not a number JSON allows"),
    ("POST", "/predict", '{"inputs": [[[Infinity, 1, 2], [3, 4, 5]]]}', JSON, 400, "Infinity is not a number"),
    ("POST", "/predict", {"inputs": [[[1e300, 1, 2], [3, 4, 5]]]}, JSON, 422, "Expected numbers within +-1e+06"),
    ('POST', "/predict", '{"inputs": [[[1e400, 1, 2], [3, 4, 5]]]}', JSON, 422, "Expected numbers within +-1e+06"),
    ("POST", "/predict", {"inputs": [SAMPLE] * 17}, JSON, 422, "At most 16 samples per request"),
    ("POST", "/predict", {"inputs": [SAMPLE]}, {"Content-Type": "text/plain"}, 415,
     "Expected Content-Type: application/json"),
    ("POST", "/predict", {"inputs": [SAMPLE]}, {}, 415, "Received: none"),
    ("POST", "/predict", json.dumps({"inputs": [SAMPLE] * 600}), JSON, 413, "the limit is 20000 bytes"),
    ("POST", "/predictions", {"inputs": [SAMPLE]}, JSON, 404, "No endpoint '/predictions'. Expected one of:"),
    ("GET", "/", None, {}, 404, "POST /predict"),
    ("GET", "/predict", None, {}, 405, "Method GET is not allowed on /predict. Expected: POST"),
    ("POST", "/health", b"", JSON, 405, "Expected: GET"),
    ("DELETE", "/predict", None, {}, 405, "Expected: POST"),
    ("PUT", "/predict", {"inputs": [SAMPLE]}, JSON, 405, "Expected: POST"),
    ("HEAD", "/predict", None, {}, 405, None),
])
def test_malformed_requests_get_a_4xx_saying_what_was_expected_and_the_server_keeps_serving(
        tensor_client, small_model, method, path, body, headers, status, message):
    content = json.dumps(body) if isinstance(body, (dict, list)) else body
    response = tensor_client.request(method, path, content=content, headers=headers)
    assert response.status_code == status and 400 <= status < 500
    if method == "HEAD":
        assert response.content == b"" and response.headers["allow"] == "POST"
    else:
        answer = response.json()
        assert message in answer["error"] and answer["status"] == status
    good = tensor_client.post("/predict", json={"inputs": [SAMPLE]})
    assert good.status_code == 200 and np.allclose(good.json()["outputs"], reference(small_model, [SAMPLE]), atol=1e-5)


def test_json_nested_a_thousand_levels_deep_is_refused_before_parsing(tensor_client):
    for body in ("[" * 1000 + "]" * 1000, '{"inputs": ' + "[" * 9000 + "]" * 9000 + "}",
                 '{"a": ' * 1000 + "1" + "}" * 1000):
        response = tensor_client.post("/predict", content=body, headers=JSON)
        assert response.status_code == 400 and "levels deep; the limit is 32" in response.json()["error"]
    # brackets inside strings are text, not nesting
    from deepzen.serving.requests import json_depth

    assert json_depth(b'{"inputs": ["[[[[[[[[[[", "\\"]]]]]]"]}') == 2
    assert json_depth(json.dumps({"a": [[[1]]], "b": "{{{{"}).encode()) == 4


def test_a_5000_digit_integer_is_refused_by_its_size(tensor_client):
    for digits in ("9" * 5000, "-" + "9" * 5000, "1" * 19):
        body = '{"inputs": [[[%s, 1, 2], [3, 4, 5]]]}' % digits
        response = tensor_client.post("/predict", content=body, headers=JSON)
        assert response.status_code == 422 and "Expected numbers within +-1e+06" in response.json()["error"]


def test_outputs_that_are_not_finite_never_become_invalid_json(small_model):
    """Inputs near 3e38 (allowed by a raised number limit) drive a linear layer to inf/NaN: a 422 names the cause."""
    deepzen.seed(0)
    linear = Sequential([Dense(4, input_shape=(2, 3))])
    linear.build()
    with torch.no_grad():
        linear.layers[0].weight.fill_(10.0)
    huge = [[[3e38, 3e38, 3e38], [-3e38, 3e38, 3e38]]]
    assert not np.isfinite(reference(linear, huge)).all()
    with client(TensorServable(linear, ServeSettings(max_abs_number=3.4e38))) as test_client:
        response = test_client.post("/predict", json={"inputs": huge})
        assert response.status_code == 422 and "not finite (NaN or Infinity)" in response.json()["error"]
        json.loads(response.text, parse_constant=strict_json)  # Python's parser alone would take bare NaN
    with client(TensorServable(linear, ServeSettings())) as test_client:  # the default limit refuses them
        response = test_client.post("/predict", json={"inputs": huge})
        assert response.status_code == 422 and "within +-1e+06" in response.json()["error"]


def test_an_integer_input_model_checks_ids_against_the_vocabulary():
    deepzen.seed(0)
    classifier = Sequential([Embedding(20, 4, input_shape=(5,)), Flatten(), Dense(3)])
    classifier.build()
    with client(TensorServable(classifier, ServeSettings())) as test_client:
        assert test_client.get("/metadata").json()["input"] == {"shape": [None, 5], "dtype": "int64",
                                                                "vocabulary_size": 20}
        answer = test_client.post("/predict", json={"inputs": [[1, 2, 3, 4, 19]]}).json()
        expected = classifier(torch.tensor([[1, 2, 3, 4, 19]])).detach().numpy()
        assert np.allclose(answer["outputs"], expected, atol=1e-6) and answer["classes"] == [int(expected.argmax())]
        for inputs, message in (([[1, 2, 3, 4, 20]], "Ids must be in [0, 20)"), ([[-1, 2, 3, 4, 5]], "Ids must be"),
                                ([[1.5, 2, 3, 4, 5]], "integer ids")):
            response = test_client.post("/predict", json={"inputs": inputs})
            assert response.status_code == 422 and message in response.json()["error"]


def test_a_model_failure_is_a_500_for_that_request_only(small_model):
    class Fragile(torch.nn.Module):
        input_spec = small_model.input_spec

        def __init__(self):
            super().__init__()
            self.inner = small_model

        def forward(self, x):
            if bool((x > 100).any()):
                raise RuntimeError("input out of the model's range")
            return self.inner(x)

    with client(TensorServable(Fragile(), ServeSettings())) as test_client:
        response = test_client.post("/predict", json={"inputs": [[[500, 0, 0], [0, 0, 0]]]})
        assert response.status_code == 500 and "input out of the model's range" in response.json()["error"]
        assert test_client.post("/predict", json={"inputs": [SAMPLE]}).status_code == 200


def test_options_and_head_are_answered(tensor_client):
    options = tensor_client.options("/predict")
    assert options.status_code == 204 and options.headers["allow"] == "OPTIONS, POST"
    assert tensor_client.options("/nowhere").status_code == 404
    head = tensor_client.head("/health")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-type"] == "application/json"
    assert "access-control-allow-origin" not in options.headers  # CORS is off by default
    preflight = tensor_client.options("/predict", headers={"Origin": "https://elsewhere.example",
                                                           "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_answers_only_the_allowed_origins(small_model):
    settings = ServeSettings(cors_origins=("https://app.example",))
    with client(TensorServable(small_model, settings)) as test_client:
        allowed = test_client.options("/predict", headers={"Origin": "https://app.example",
                                                           "Access-Control-Request-Method": "POST"})
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = test_client.post("/predict", json={"inputs": [SAMPLE]}, headers={"Origin": "https://evil.example"})
        assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


def test_the_api_key_guards_everything_but_health_and_the_page(small_model, monkeypatch):
    with client(TensorServable(small_model, ServeSettings(api_key="s3cret-key"))) as test_client:
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer s3cret-ke"},
                        {"Authorization": "s3cret-key"}):
            response = test_client.post("/predict", json={"inputs": [SAMPLE]}, headers=headers)
            assert response.status_code == 401 and "Expected an API key" in response.json()["error"]
            assert response.headers["www-authenticate"] == "Bearer"
        assert test_client.get("/metadata").status_code == 401 and test_client.get("/metrics").status_code == 401
        for headers in ({"X-API-Key": "s3cret-key"}, {"Authorization": "Bearer s3cret-key"}):
            assert test_client.post("/predict", json={"inputs": [SAMPLE]}, headers=headers).status_code == 200
        assert test_client.get("/metadata", headers={"X-API-Key": "s3cret-key"}).json()["auth"] is True
        for path in ("/health", "/ready", "/ui", "/openapi.json", "/docs", "/docs/swagger-ui-bundle.js",
                     "/docs/swagger-ui.css", "/docs/favicon.png"):
            assert test_client.get(path).status_code == 200
    from deepzen import cli

    monkeypatch.setenv("DEEPZEN_API_KEY", "from-the-environment")
    args = cli.build_parser().parse_args(["serve", "RUN"])
    assert cli.serve_settings(args).api_key == "from-the-environment"
    args = cli.build_parser().parse_args(["serve", "RUN", "--api-key", "given"])
    assert cli.serve_settings(args).api_key == "given" and cli.serve_settings(args).host == "127.0.0.1"


def test_requests_over_the_concurrency_limit_or_the_timeout_get_503(small_model):
    release = threading.Event()

    class Slow(TensorServable):
        def run_batch(self, key, payloads):
            release.wait(timeout=30)
            return super().run_batch(key, payloads)

    release.set()  # the probe at construction runs at once
    servable = Slow(small_model, ServeSettings(max_connections=1, request_timeout=0.5))
    release.clear()
    with client(servable) as test_client:
        first = []
        thread = threading.Thread(target=lambda: first.append(test_client.post("/predict", json={"inputs": [SAMPLE]})))
        thread.start()
        while not test_client.app.state.in_flight:
            time.sleep(0.002)
        busy = test_client.post("/predict", json={"inputs": [SAMPLE]})
        thread.join(timeout=30)
        release.set()
    assert busy.status_code == 503 and "1 requests in flight (the limit is 1)" in busy.json()["error"]
    assert first[0].status_code == 503 and "did not finish within 0.5 s" in first[0].json()["error"]


def test_metrics_count_requests_by_status_with_a_latency_histogram(tensor_client):
    tensor_client.post("/predict", json={"inputs": [SAMPLE]})
    tensor_client.post("/predict", json={"inputs": [SAMPLE, SAMPLE]})
    tensor_client.post("/predict", content="{", headers=JSON)
    tensor_client.get("/no/such/path")
    response = tensor_client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    counts = {(path, status): int(count) for path, status, count in
              re.findall(r'deepzen_requests_total\{path="([^"]+)",status="(\d+)"\} (\d+)', text)}
    assert counts[("/predict", "200")] == 2 and counts[("/predict", "400")] == 1 and counts[("other", "404")] == 1
    buckets = [int(n) for n in re.findall(r'deepzen_request_seconds_bucket\{le="[^"]+"\} (\d+)', text)]
    assert buckets == sorted(buckets) and buckets[-1] == sum(counts.values())  # cumulative; +Inf counts them all
    assert "deepzen_batch_samples_sum 3" in text and "deepzen_batch_samples_count 2" in text
    assert "\ndeepzen_requests_in_flight 1\n" in text  # the /metrics request itself


def test_settings_refuse_unsafe_values():
    with pytest.raises(ValueError, match="max_body_bytes > 0. Received: max_body_bytes=0"):
        ServeSettings(max_body_bytes=0)
    with pytest.raises(ValueError, match="max_json_depth >= 4"):
        ServeSettings(max_json_depth=2)
    with pytest.raises(ValueError, match="api_key is empty"):
        ServeSettings(api_key=" ")
