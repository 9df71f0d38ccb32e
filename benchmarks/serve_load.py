"""A bounded loopback load test of the prediction servers: the old one (the standard library's
``ThreadingHTTPServer``, as of commit ``OLD_SERVER_COMMIT``) against the new one (FastAPI on uvicorn),
in the same run, interleaved round by round.

Each server runs in its own process on 127.0.0.1 with a free port and serves the same model file;
``--concurrency`` client threads of this process send ``--requests`` single-sample ``POST /predict``
requests in all over keep-alive connections (default: 8 clients x 250 requests), with a minimal
HTTP/1.1 client (prepared request bytes, answers read by Content-Length) so that the clients take
little of the CPU they share with the server. Every answer is compared with the model's own output
for the same sample (max abs difference <= 1e-4).

The old server's code is not kept in the package: it is read from git (``git show
OLD_SERVER_COMMIT:src/deepzen/serving.py``) into a temporary module when the benchmark runs.

    python benchmarks/serve_load.py                        # an untrained digits CNN, old vs new, 3 rounds
    python benchmarks/serve_load.py --run runs/demo --servers new --requests 5000 --concurrency 16

Prints one line per round and server, a summary with medians, and, last, one JSON line with every number.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

TOLERANCE = 1e-4
LOOPBACK = "127.0.0.1"
OLD_SERVER_COMMIT = "93d47f3fee56d9b9936dc4d67403d80db7ea0d6c"  # the last version of src/deepzen/serving.py
REPOSITORY = Path(__file__).resolve().parents[1]


# -- the servers, each in its own process ------------------------------------------------------------------
def run_server(which: str, model_path: str, old_module: str | None, max_batch_size: int, max_wait_ms: float) -> None:
    """Serves ``model_path`` with the ``which`` server on a free port; prints ``PORT n`` when it listens."""
    from deepzen.training.serialization import load_model

    model = load_model(model_path, compile=False)
    if which == "old":
        import importlib.util

        spec = importlib.util.spec_from_file_location("old_serving", old_module)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        server = old.ModelServer(model, host=LOOPBACK, port=0, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
        print(f"PORT {server.httpd.server_address[1]}", flush=True)
        server.serve_forever()
        return
    from deepzen.serving.server import serve
    from deepzen.serving.servables import TensorServable
    from deepzen.serving.settings import ServeSettings

    settings = ServeSettings(host=LOOPBACK, port=0, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
    serve(TensorServable(model, settings), on_ready=lambda url: print(f"PORT {url.rsplit(':', 1)[1]}", flush=True))


def old_server_source(folder: Path) -> Path:
    """The old server's module, written from git into ``folder``."""
    source = subprocess.run(["git", "show", f"{OLD_SERVER_COMMIT}:src/deepzen/serving.py"], cwd=REPOSITORY,
                            capture_output=True, text=True, check=True).stdout
    path = folder / "old_serving.py"
    path.write_text(source, encoding="utf-8")
    return path


class ServerProcess:
    def __init__(self, which: str, model_path: Path, old_module: Path | None, max_batch_size: int, max_wait_ms: float):
        command = [sys.executable, __file__, "--serve", which, "--model-file", str(model_path),
                   "--max-batch-size", str(max_batch_size), "--max-wait-ms", str(max_wait_ms)]
        if old_module is not None:
            command += ["--old-module", str(old_module)]
        environment = dict(os.environ, PYTHONPATH=str(REPOSITORY / "src"))
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.process.kill()
            raise RuntimeError(f"The {which} server did not start (it printed {line!r})")
        self.port = int(line.split()[1])

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


# -- the clients ------------------------------------------------------------------------------------------
class KeepAliveConnection:
    """A minimal HTTP/1.1 client on one keep-alive connection (a load generator's, like wrk's): requests are
    sent as prepared bytes and answers read by their Content-Length, so the clients, which share the
    machine with the server, spend little CPU per request."""

    def __init__(self, port: int, timeout: float):
        self.socket = socket.create_connection((LOOPBACK, port), timeout=timeout)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    @staticmethod
    def request(body: bytes) -> bytes:
        return (b"POST /predict HTTP/1.1\r\nHost: " + LOOPBACK.encode() + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    def post(self, request: bytes) -> tuple[int, bytes]:
        """Sends one prepared request; returns the answer's status and body."""
        self.socket.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in lines[1:] if line.lower().startswith(b"content-length:"))
        while len(self.buffer) < length:
            self._receive()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), body

    def _receive(self) -> None:
        chunk = self.socket.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.socket.close()


def load_test(port: int, pool: np.ndarray, expected: np.ndarray, requests: int, concurrency: int,
              max_seconds: float) -> dict:
    """``requests`` single-sample requests from ``concurrency`` keep-alive clients; the report as a dict."""
    tickets = itertools.count()
    deadline = time.monotonic() + max_seconds
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter = Counter()
    outcome: Counter = Counter()
    requests_bytes = [KeepAliveConnection.request(json.dumps({"inputs": [sample]}).encode())
                      for sample in pool.tolist()]  # encoded before the clock starts

    def client() -> None:
        connection = KeepAliveConnection(port, max_seconds)
        while time.monotonic() < deadline:
            with lock:
                ticket = next(tickets)
            if ticket >= requests:
                break
            row = ticket % len(pool)
            started = time.perf_counter()
            try:
                status, body = connection.post(requests_bytes[row])
                answer = json.loads(body)
            except (OSError, ValueError) as error:
                status = type(error).__name__
                connection.close()
                connection = KeepAliveConnection(port, max_seconds)
            elapsed = time.perf_counter() - started
            correct = status == 200 and np.abs(np.asarray(answer["outputs"][0]) - expected[row]).max() <= TOLERANCE
            with lock:
                outcome["sent"] += 1
                statuses[str(status)] += 1
                if status == 200:
                    latencies.append(elapsed)
                    outcome["answered"] += 1
                    outcome["correct" if correct else "wrong"] += 1
        connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    started, client_cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0) + 10)
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu  # this process's CPU: the clients' share of the machine
    milliseconds = np.asarray(latencies) * 1000
    percentile = (lambda q: round(float(np.percentile(milliseconds, q)), 3)) if len(latencies) else (lambda q: None)
    return {"sent": outcome["sent"], "answered": outcome["answered"], "correct": outcome["correct"],
            "wrong": outcome["wrong"], "lost": outcome["sent"] - outcome["answered"],
            "stuck_clients": sum(thread.is_alive() for thread in threads), "statuses": dict(statuses),
            "seconds": round(seconds, 3), "throughput_rps": round(outcome["answered"] / seconds, 1),
            "client_cpu_ms_per_request": round(1000 * client_cpu / max(outcome["sent"], 1), 3),
            "latency_ms": {"p50": percentile(50), "p90": percentile(90), "p99": percentile(99),
                           "max": round(float(milliseconds.max()), 3) if len(latencies) else None}}


def default_model() -> torch.nn.Module:
    """An untrained digits CNN (the demo's architecture, 32 filters), built, seeded."""
    import deepzen
    from deepzen.vision.recipes import digits_cnn_model

    deepzen.seed(0)
    model = digits_cnn_model()
    model.build()
    return model


def benchmark(model: torch.nn.Module, servers: list[str], rounds: int, requests: int, concurrency: int,
              max_seconds: float, max_batch_size: int, max_wait_ms: float) -> dict:
    from deepzen.serving.spec import random_inputs

    pool = random_inputs(model, 256, seed=0)  # (256, *input_shape)
    model.eval()
    with torch.no_grad():
        expected = model(pool).float().numpy()
    runs: dict[str, list[dict]] = {server: [] for server in servers}
    with tempfile.TemporaryDirectory() as folder:
        model_path = Path(folder) / "model.dz"
        model.save(model_path)
        old_module = old_server_source(Path(folder)) if "old" in servers else None
        for round_number in range(1, rounds + 1):
            for server in servers:  # interleaved: a busy spell on a shared machine hits both
                process = ServerProcess(server, model_path, old_module if server == "old" else None, max_batch_size,
                                        max_wait_ms)
                try:
                    report = load_test(process.port, pool.numpy(), expected, requests, concurrency, max_seconds)
                finally:
                    process.close()
                runs[server].append(report)
                latency = report["latency_ms"]
                print(f"round {round_number} {server}: {report['answered']}/{report['sent']} answered, "
                      f"{report['throughput_rps']} requests/s, p50 {latency['p50']} ms, p99 {latency['p99']} ms, "
                      f"lost {report['lost']}, wrong {report['wrong']}", flush=True)
    summary = {server: {"throughput_rps": statistics.median(r["throughput_rps"] for r in reports),
                        "p50_ms": statistics.median(r["latency_ms"]["p50"] or 0 for r in reports),
                        "p99_ms": statistics.median(r["latency_ms"]["p99"] or 0 for r in reports)}
               for server, reports in runs.items()}
    if "old" in summary and "new" in summary:
        summary["speedup"] = round(summary["new"]["throughput_rps"] / summary["old"]["throughput_rps"], 2)
    return {"requests": requests, "concurrency": concurrency, "rounds": rounds, "runs": runs, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="serve this run folder's model (default: an untrained digits CNN)")
    parser.add_argument("--servers", default="old,new", help="which servers, comma-separated: old, new")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each runs every server once")
    parser.add_argument("--requests", type=int, default=2000, help="requests per server and round")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop sending after this long")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--serve", choices=["old", "new"], help=argparse.SUPPRESS)  # the server processes
    parser.add_argument("--model-file", help=argparse.SUPPRESS)
    parser.add_argument("--old-module", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        run_server(args.serve, args.model_file, args.old_module, args.max_batch_size, args.max_wait_ms)
        return 0
    servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    if not servers or set(servers) - {"old", "new"}:
        raise SystemExit(f"--servers expects old, new or both. Received: {args.servers!r}")
    if args.run:
        from deepzen.runs import model_file
        from deepzen.training.serialization import load_model

        model = load_model(model_file(args.run), compile=False)
    else:
        model = default_model()
    report = benchmark(model, servers, args.rounds, args.requests, args.concurrency, args.max_seconds,
                       args.max_batch_size, args.max_wait_ms)
    for server in servers:
        numbers = report["summary"][server]
        print(f"{server}: median {numbers['throughput_rps']} requests/s, p50 {numbers['p50_ms']} ms, "
              f"p99 {numbers['p99_ms']} ms over {args.rounds} rounds")
    if "speedup" in report["summary"]:
        print(f"new / old throughput: {report['summary']['speedup']}x")
    print(json.dumps(report))
    failures = [r for reports in report["runs"].values() for r in reports
                if r["lost"] or r["wrong"] or r["stuck_clients"]]
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
