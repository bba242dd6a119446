"""A small model server that always serves the verified production model.

It never names a file or a version: it asks the resolver for the stage, loads
the verified files, and swaps to a newly promoted (or rolled-back) model
without a restart.

    python examples/serving/server.py localhost:5000/ml/fraud --trust alice.pub --port 8080
    curl 'localhost:8080/predict?x=3'

The "model" here is a JSON file ``model.json`` holding ``{"weight": w, "bias": b}``;
replace ``load`` and ``predict`` with your framework's.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from modelreg import ModelregError, ResolvedModel, Resolver


def load(path: Path) -> dict[str, Any]:
    return json.loads((path / "model.json").read_text())


def predict(model: dict[str, Any], x: float) -> float:
    return float(model["weight"]) * x + float(model["bias"])


class Serving:
    """The model being served; swapped atomically under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.info: ResolvedModel | None = None
        self.model: dict[str, Any] | None = None
        self.ready = threading.Event()

    def swap(self, info: ResolvedModel, model: dict[str, Any]) -> None:
        with self._lock:
            self.info, self.model = info, model
        self.ready.set()

    def current(self) -> tuple[ResolvedModel | None, dict[str, Any] | None]:
        with self._lock:
            return self.info, self.model


def watch(
    resolver: Resolver,
    repository: str,
    stage: str,
    interval: float,
    serving: Serving,
    stop: threading.Event,
) -> None:
    def report(error: ModelregError) -> None:
        # keep serving the last verified model; say why the new one was refused
        print(f"not switching: {error}", file=sys.stderr, flush=True)

    for info in resolver.watch(repository, stage, interval=interval, stop=stop, on_error=report):
        serving.swap(info, load(resolver.fetch(info)))
        print(f"serving {info.reference} (v{info.version})", file=sys.stderr, flush=True)


def handler_for(serving: Serving) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            info, model = serving.current()
            if info is None or model is None:
                return self._send(503, {"error": "no verified model yet"})
            if url.path == "/healthz":
                return self._send(200, info.to_dict())
            if url.path != "/predict":
                return self._send(404, {"error": "try /predict?x=1"})
            try:
                x = float(parse_qs(url.query).get("x", ["0"])[0])
            except ValueError:
                return self._send(400, {"error": "x must be a number"})
            self._send(
                200,
                {"prediction": predict(model, x), "version": info.version, "digest": info.digest},
            )

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repository")
    parser.add_argument("--stage", default="production")
    parser.add_argument("--trust", action="append", default=[], help="trusted public key")
    parser.add_argument("--policy", help="trust policy file")
    parser.add_argument("--cache-dir")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()

    resolver = Resolver(trust=args.trust, policy=args.policy, cache_dir=args.cache_dir)
    serving, stop = Serving(), threading.Event()
    threading.Thread(
        target=watch,
        args=(resolver, args.repository, args.stage, args.interval, serving, stop),
        daemon=True,
    ).start()
    if not serving.ready.wait(60):
        sys.exit("no verified model within 60 s")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(serving))
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        stop.set()


if __name__ == "__main__":
    main()
