"""Self-signed TLS certificates for loopback services."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers.processes import _which


def make_tls_cert(directory: Path, common_name: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate + key for 127.0.0.1/localhost; returns (cert, key).

    The certificate is its own CA: pass it as ``verify=``/``--cert-dir`` to clients.
    """
    openssl = _which("openssl")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={common_name}",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


# --------------------------------------------------------------------------- containerd
