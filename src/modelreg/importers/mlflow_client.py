"""A small, bounded client for an MLflow tracking server's REST API (no mlflow package).

Only what an import reads: a registered model, its versions, each version's
download URI and run, and the run's artifacts through the server's artifact
proxy (``mlflow server --serve-artifacts``). Every answer is bounded (JSON size,
pages, files, bytes) and every artifact path is checked before it names a file:
the server is not trusted to stay inside the directory it is asked for.
Credentials come from the environment as MLflow's own client reads them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests

from ..errors import (
    AuthError,
    IntegrityError,
    InvalidInput,
    NotFound,
    RegistryError,
    RegistryUnavailable,
)

SCHEMES = {"mlflow+http": "http", "mlflow+https": "https"}
MAX_JSON = 16 * 1024 * 1024  # one REST answer
MAX_PAGES = 1000  # of model-versions/search
MAX_FILES = 100_000  # in one version's artifacts
MAX_DEPTH = 64  # directory levels under the model's artifact root
MAX_BYTES = 1 << 40  # one version's artifacts
_CHUNK = 1 << 20
_ARTIFACTS_SCHEME = "mlflow-artifacts"


@dataclass(frozen=True)
class MlflowSource:
    """``mlflow+http[s]://HOST[:PORT][/PATH]/MODEL``: a tracking server and a registered model."""

    base_url: str  # http[s]://HOST[:PORT][/PATH], no trailing slash
    model: str

    def __str__(self) -> str:
        scheme, rest = self.base_url.split("://", 1)
        return f"mlflow+{scheme}://{rest}/{quote(self.model, safe='')}"


def is_mlflow_source(text: str) -> bool:
    return text.lower().startswith("mlflow+")


def parse_source(text: str) -> MlflowSource:
    hint = "write mlflow+http://HOST[:PORT][/PATH]/MODEL, e.g. mlflow+http://127.0.0.1:5000/fraud"
    try:
        parts = urlsplit(text)
        port = parts.port  # raises on a malformed port
    except ValueError:
        raise InvalidInput(f"{text!r} is not an MLflow model URL", hint) from None
    scheme = SCHEMES.get(parts.scheme.lower())
    path = parts.path.rstrip("/")
    if scheme is None or not parts.hostname or "/" not in path or parts.query or parts.fragment:
        raise InvalidInput(f"{text!r} is not an MLflow model URL", hint)
    if parts.username or parts.password:
        raise InvalidInput(
            f"{text!r} carries credentials in the URL",
            "set MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
        )
    prefix, _, model = path.rpartition("/")
    name = unquote(model)
    if not name or any(ord(c) < 32 for c in name):
        raise InvalidInput(f"{text!r} names no registered model", hint)
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = f"{host}:{port}" if port else host
    return MlflowSource(f"{scheme}://{netloc}{prefix}", name)


def _auth(environ: Mapping[str, str]) -> tuple[dict[str, str], tuple[str, str] | None]:
    token = environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}, None
    user, password = (
        environ.get("MLFLOW_TRACKING_USERNAME"),
        environ.get("MLFLOW_TRACKING_PASSWORD"),
    )
    if user and password:
        return {}, (user, password)
    return {}, None


def safe_relative(path: str, where: str) -> PurePosixPath:
    """An artifact path the server named, as a relative path that stays inside its root."""
    pure = PurePosixPath(path)
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\0" in path
        or any(part in ("", ".", "..") for part in path.split("/"))
        or len(pure.parts) > MAX_DEPTH
    ):
        raise IntegrityError(
            f"the MLflow server listed an unsafe artifact path {path!r} under {where}",
            "nothing was written; the server (or its artifact store) is not to be trusted",
        )
    return pure


class MlflowClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        environ: Mapping[str, str] | None = None,
        verify: bool | str = True,
    ) -> None:
        env = os.environ if environ is None else environ
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.trust_env = False  # no proxies or netrc: the URL given is the server
        headers, auth = _auth(env)
        self._session.headers.update(headers)
        self._session.auth = auth
        insecure = env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("1", "true")
        cert = env.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
        self._session.verify = False if insecure else (cert or verify)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> MlflowClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ----- requests ----------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> requests.Response:
        url = f"{self.base_url}{path}"
        try:
            response = self._session.get(
                url, params=params, timeout=self.timeout, stream=True, allow_redirects=False
            )
        except requests.exceptions.SSLError as exc:
            raise RegistryUnavailable(
                f"TLS with the MLflow server at {self.base_url} failed: {_first_line(exc)}",
                "set MLFLOW_TRACKING_SERVER_CERT_PATH to its CA bundle",
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            why = (
                f"no answer within {self.timeout:g}s"
                if isinstance(exc, requests.Timeout)
                else "connection refused"
                if "refused" in str(exc).lower()
                else "connection failed"
            )
            raise RegistryUnavailable(
                f"cannot reach the MLflow server at {self.base_url}: {why}",
                "check the host and port, and that 'mlflow server' is running",
            ) from None
        if response.status_code in (401, 403):
            response.close()
            raise AuthError(
                f"the MLflow server at {self.base_url} refused access ({response.status_code})",
                "set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD",
            )
        return response

    def get_json(self, endpoint: str, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /api/2.0/mlflow/ENDPOINT``: the answer's JSON object (bounded)."""
        response = self._get(f"/api/2.0/mlflow/{endpoint}", params)
        with response:
            body = _read_bounded(response, MAX_JSON, f"{endpoint} answer")
            data = _parse_json(body, endpoint, self.base_url)
            if response.status_code == 200:
                return data
            code = str(data.get("error_code", ""))
            message = str(data.get("message", ""))[:300] or f"HTTP {response.status_code}"
            if response.status_code == 404 or code == "RESOURCE_DOES_NOT_EXIST":
                raise NotFound(f"MLflow: {message}", "check the registered model's name")
            raise RegistryError(
                f"the MLflow server answered {endpoint} with {response.status_code}: {message}",
                "check the server's log",
            )

    # ----- the registry ------------------------------------------------------------------

    def registered_model(self, name: str) -> dict[str, Any]:
        try:
            data = self.get_json("registered-models/get", {"name": name})
        except NotFound:
            raise NotFound(
                f"the MLflow server at {self.base_url} has no registered model {name!r}",
                "check the name in the MLflow UI (Models), or list them with its REST API",
            ) from None
        return _object(data.get("registered_model"), "registered_model")

    def model_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a registered model (any order)."""
        versions: list[dict[str, Any]] = []
        escaped = name.replace("\\", "\\\\").replace("'", "\\'")
        token = ""
        for _ in range(MAX_PAGES):
            params = {"filter": f"name='{escaped}'", "max_results": "200"}
            if token:
                params["page_token"] = token
            data = self.get_json("model-versions/search", params)
            page = data.get("model_versions", [])
            if not isinstance(page, list):
                raise _malformed("model-versions/search", "model_versions is not a list")
            versions.extend(_object(item, "model version") for item in page)
            token = data.get("next_page_token") or ""
            if not isinstance(token, str):
                raise _malformed("model-versions/search", "next_page_token is not a string")
            if not token:
                return versions
        raise RegistryError(
            f"the MLflow server kept paging model versions of {name!r} past {MAX_PAGES} pages",
            "the server is misbehaving; check it",
        )

    def download_uri(self, name: str, version: str) -> str:
        data = self.get_json("model-versions/get-download-uri", {"name": name, "version": version})
        uri = data.get("artifact_uri")
        if not isinstance(uri, str) or not uri:
            raise _malformed("model-versions/get-download-uri", "no artifact_uri")
        return uri

    def run(self, run_id: str) -> dict[str, Any]:
        data = self.get_json("runs/get", {"run_id": run_id})
        return _object(data.get("run"), "run")

    # ----- artifacts ---------------------------------------------------------------------

    def artifact_root(self, uri: str) -> str:
        """The proxied artifact path of ``mlflow-artifacts:[//HOST]/PATH``."""
        parts = urlsplit(uri)
        if parts.scheme != _ARTIFACTS_SCHEME:
            raise NotFound(
                f"the artifacts are at {uri!r}, which the tracking server does not serve",
                "run 'mlflow server --serve-artifacts', or copy the artifacts there",
            )
        return str(safe_relative(unquote(parts.path).lstrip("/"), uri))

    def walk(self, root: str) -> Iterator[tuple[PurePosixPath, int | None]]:
        """Every file under ``root``: its path relative to ``root`` and its listed size."""
        pending = [PurePosixPath()]
        seen = 0
        while pending:
            directory = pending.pop()
            listed = f"{root}/{directory}" if directory.parts else root
            for entry in self._list(listed):
                name = entry.get("path")
                if not isinstance(name, str):
                    raise _malformed("artifacts list", "an entry without a path")
                # answers name entries relative to the listed directory, or to the root
                if name.startswith(f"{listed}/"):
                    name = name[len(listed) + 1 :]
                relative = directory / safe_relative(name, listed)
                safe_relative(str(relative), root)  # the depth bound over the whole path
                seen += 1
                if seen > MAX_FILES:
                    raise IntegrityError(
                        f"the MLflow artifacts under {root} list more than {MAX_FILES} entries",
                        "nothing was written; import models of a sensible size",
                    )
                if entry.get("is_dir"):
                    pending.append(relative)
                    continue
                size = entry.get("file_size")
                yield relative, size if isinstance(size, int) and size >= 0 else None

    def _list(self, path: str) -> list[dict[str, Any]]:
        response = self._get("/api/2.0/mlflow-artifacts/artifacts", {"path": path})
        with response:
            body = _read_bounded(response, MAX_JSON, "artifact listing")
            if response.status_code == 404:
                raise NotFound(f"the MLflow artifacts at {path} are gone", "")
            if response.status_code != 200:
                raise RegistryError(
                    f"the MLflow server answered an artifact listing with {response.status_code}",
                    "check the server's log",
                )
            data = _parse_json(body, "artifact listing", self.base_url)
        files = data.get("files", [])
        if not isinstance(files, list):
            raise _malformed("artifacts list", "files is not a list")
        return [_object(item, "artifact entry") for item in files]

    def download(
        self, path: str, target: Path, size: int | None, budget: int, report: Callable[[int], None]
    ) -> int:
        """Stream one artifact into ``target``; refuse more than ``size`` or ``budget`` bytes."""
        response = self._get(f"/api/2.0/mlflow-artifacts/artifacts/{quote(path)}")
        with response:
            if response.status_code == 404:
                raise NotFound(f"the MLflow artifact {path} is gone", "")
            if response.status_code != 200:
                raise RegistryError(
                    f"the MLflow server answered a download of {path} with {response.status_code}",
                    "check the server's log",
                )
            limit = min(size, budget) if size is not None else budget
            written = 0
            with open(target, "xb") as out:
                for chunk in response.iter_content(_CHUNK):
                    written += len(chunk)
                    if written > limit:
                        raise IntegrityError(
                            f"the MLflow artifact {path} is larger than "
                            + (f"its listed {size} bytes" if size is not None and size <= budget
                               else f"the {MAX_BYTES}-byte bound"),
                            "nothing was written; the server is not to be trusted",
                        )  # fmt: skip
                    out.write(chunk)
                    report(len(chunk))
            if size is not None and written != size:
                raise IntegrityError(
                    f"the MLflow artifact {path} ended at {written} of its {size} bytes",
                    "import again; nothing was written",
                )
            return written


def _read_bounded(response: requests.Response, limit: int, what: str) -> bytes:
    body = bytearray()
    try:
        for chunk in response.iter_content(_CHUNK):
            body += chunk
            if len(body) > limit:
                raise RegistryError(
                    f"the MLflow server's {what} is larger than {limit} bytes",
                    "the server is misbehaving; nothing was written",
                )
    except requests.RequestException as exc:
        raise RegistryUnavailable(
            f"the MLflow server broke off its {what}: {_first_line(exc)}", "try again"
        ) from None
    return bytes(body)


def _parse_json(body: bytes, what: str, base_url: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise RegistryError(
            f"the server at {base_url} answered {what} with something other than JSON",
            "is this an MLflow tracking server? check the URL's path",
        ) from None
    return _object(data, what)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(what, "not a JSON object")
    return value


def _malformed(what: str, why: str) -> RegistryError:
    return RegistryError(f"the MLflow server's {what} is malformed: {why}", "check the server")


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
