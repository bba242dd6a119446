"""A tiny model server: the standard library only, so any Python base image will do.

It reads the model files the image was built with (``$MODEL_DIR``, default
``/opt/model``) once at start-up and answers:

* ``GET /healthz``  — 200 once the model is loaded;
* ``GET /v1/model`` — which model this is (``$MODEL_REF``) and its files (name, size,
  sha256), so a client or a probe can check what is being served;
* ``POST /v1/predict`` — where your framework's predict goes; here it echoes the JSON
  body with the model reference, to show the wiring.

Replace ``load_model`` and ``predict`` with your framework's loading and inference.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY = 1024 * 1024


def load_model(model_dir: Path) -> dict[str, Any]:
    """Read the model directory; a real server would load the weights here."""
    if not model_dir.is_dir():
        raise SystemExit(f"model directory {model_dir} does not exist")
    files = {}
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        files[path.relative_to(model_dir).as_posix()] = {
            "size": path.stat().st_size,
            "sha256": digest.hexdigest(),
        }
    if not files:
        raise SystemExit(f"model directory {model_dir} is empty")
    return {"reference": os.environ.get("MODEL_REF", ""), "files": files}


def predict(model: dict[str, Any], request: Any) -> dict[str, Any]:
    return {"model": model["reference"], "input": request}


class Handler(BaseHTTPRequestHandler):
    model: dict[str, Any] = {}

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, {"status": "ok"})
        elif self.path == "/v1/model":
            self._send(200, self.model)
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/v1/predict":
            self._send(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, {"error": "request too large"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            self._send(400, {"error": "body is not JSON"})
            return
        self._send(200, predict(self.model, body))

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main() -> None:
    Handler.model = load_model(Path(os.environ.get("MODEL_DIR", "/opt/model")))
    host = os.environ.get("HOST", "0.0.0.0")
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"serving {Handler.model['reference'] or 'model'} on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
