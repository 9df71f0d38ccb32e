"""A bounded load test of the prediction server on loopback: throughput, latency percentiles, and
that no request was lost or answered wrongly.

The server (``deepzen.serving.ModelServer``, the one behind ``deepzen serve``) runs in this process
on 127.0.0.1 with a free port; ``--concurrency`` client threads send ``POST /predict`` over
keep-alive connections until ``--requests`` were sent or ``--max-seconds`` passed. Every answer is
compared with the model's own output for the same samples (max abs difference <= 1e-4).

    python benchmarks/serve_load.py                            # an untrained digits CNN
    python benchmarks/serve_load.py --run runs/demo --requests 5000 --concurrency 16

Prints a summary and, last, one JSON line with every number.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import sys
import threading
import time
from collections import Counter

import numpy as np
import torch

TOLERANCE = 1e-4
LOOPBACK = "127.0.0.1"


def load_test(model: torch.nn.Module, requests: int = 1000, concurrency: int = 8, max_seconds: float = 60.0,
              samples_per_request: int = 1, max_batch_size: int = 64, max_wait_ms: float = 2.0) -> dict:
    """Runs the load test against a fresh server for ``model`` and returns the report (a dict)."""
    from deepzen.serving import ModelServer, random_inputs

    pool = random_inputs(model, 256, seed=0)  # (256, *input_shape)
    model.eval()
    with torch.no_grad():
        expected = model(pool.to(next(model.parameters()).device)).float().cpu().numpy()
    pool = pool.numpy()
    tickets = itertools.count()
    deadline = time.monotonic() + max_seconds
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter = Counter()
    outcome = Counter()

    def client(host: str, port: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=max_seconds)
        while time.monotonic() < deadline:
            with lock:
                ticket = next(tickets)
            if ticket >= requests:
                break
            rows = [(ticket * samples_per_request + j) % len(pool) for j in range(samples_per_request)]
            body = json.dumps({"inputs": pool[rows].tolist()})
            started = time.perf_counter()
            try:
                connection.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = json.loads(response.read())
                status = response.status
            except (OSError, http.client.HTTPException, json.JSONDecodeError) as error:
                status = type(error).__name__
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=max_seconds)
            elapsed = time.perf_counter() - started
            correct = status == 200 and np.abs(np.asarray(answer["outputs"]) - expected[rows]).max() <= TOLERANCE
            with lock:
                outcome["sent"] += 1
                statuses[str(status)] += 1
                if status == 200:
                    latencies.append(elapsed)
                    outcome["answered"] += 1
                    outcome["correct" if correct else "wrong"] += 1
        connection.close()

    with ModelServer(model, host=LOOPBACK, port=0, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms) as server:
        host, port = server.httpd.server_address[:2]
        threads = [threading.Thread(target=client, args=(host, port), daemon=True) for _ in range(concurrency)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0) + 10)
        seconds = time.perf_counter() - started
        stuck = sum(thread.is_alive() for thread in threads)
        health = server.health()
    milliseconds = np.asarray(latencies) * 1000
    percentile = (lambda q: round(float(np.percentile(milliseconds, q)), 3)) if len(latencies) else (lambda q: None)
    return {
        "requests": requests, "concurrency": concurrency, "samples_per_request": samples_per_request,
        "sent": outcome["sent"], "answered": outcome["answered"], "correct": outcome["correct"],
        "wrong": outcome["wrong"], "lost": outcome["sent"] - outcome["answered"], "stuck_clients": stuck,
        "statuses": dict(statuses), "seconds": round(seconds, 3),
        "throughput_rps": round(outcome["answered"] / seconds, 1),
        "samples_per_second": round(outcome["answered"] * samples_per_request / seconds, 1),
        "latency_ms": {"p50": percentile(50), "p90": percentile(90), "p99": percentile(99),
                       "max": round(float(milliseconds.max()), 3) if len(latencies) else None},
        "server": {"batches": health["batches"], "mean_requests_per_batch":
                   round(health["requests"] / max(health["batches"], 1), 2),
                   "largest_batch_requests": health["largest_batch_requests"]},
    }


def default_model() -> torch.nn.Module:
    """An untrained digits CNN (the demo's architecture), built, seeded."""
    import deepzen
    from deepzen.vision.recipes import digits_cnn_model

    deepzen.seed(0)
    model = digits_cnn_model()
    model.build()
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="serve this run folder's model (default: an untrained digits CNN)")
    parser.add_argument("--requests", type=int, default=1000, help="requests to send at most")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="stop sending after this long")
    parser.add_argument("--samples-per-request", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.run:
        from deepzen.runs import model_file
        from deepzen.training.serialization import load_model

        model = load_model(model_file(args.run), compile=False)
    else:
        model = default_model()
    report = load_test(model, args.requests, args.concurrency, args.max_seconds, args.samples_per_request,
                       args.max_batch_size, args.max_wait_ms)
    latency = report["latency_ms"]
    print(f"{report['answered']}/{report['sent']} answered in {report['seconds']} s "
          f"({report['throughput_rps']} requests/s, {report['samples_per_second']} samples/s) with "
          f"{args.concurrency} clients; latency p50 {latency['p50']} ms, p90 {latency['p90']} ms, p99 {latency['p99']} "
          f"ms; lost {report['lost']}, wrong {report['wrong']}; "
          f"{report['server']['mean_requests_per_batch']} requests per model call on average")
    print(json.dumps(report))
    return 0 if report["lost"] == 0 and report["wrong"] == 0 and report["stuck_clients"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
