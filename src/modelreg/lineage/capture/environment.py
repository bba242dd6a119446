"""Environment capture: this Python, its installed packages, the machine's accelerators."""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import sys
from collections import Counter
from typing import Final

from ..model import Environment

_OCI_ARCH: Final = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "x64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "x86": "386",
    "armv7l": "arm/v7",
    "armv6l": "arm/v6",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
_OCI_OS: Final = {"linux": "linux", "darwin": "darwin", "win32": "windows", "cygwin": "windows"}

_ACCELERATOR_PACKAGES: Final = frozenset(
    {
        "torch",
        "jax",
        "jaxlib",
        "tensorflow",
        "tensorflow-gpu",
        "tensorflow-cpu",
        "tensorflow-macos",
        "tensorflow-metal",
        "triton",
        "onnxruntime-gpu",
        "cupy",
    }
)
_ACCELERATOR_PREFIXES: Final = (
    "nvidia-cuda-runtime-",
    "nvidia-cudnn-",
    "nvidia-nccl-",
    "jax-cuda",
    "jax-rocm",
    "cupy-cuda",
    "pytorch-triton",
)


def capture_environment() -> tuple[Environment, bytes]:
    """Describe this Python and machine; return it with the freeze list's bytes.

    The freeze list is ``name==version`` lines, names normalised (PEP 503), sorted,
    one version per name (the one that imports first on ``sys.path``). Accelerator
    versions come from that list (nothing is imported) plus the NVIDIA driver when
    ``nvidia-smi`` is on PATH and answers within 2 s.
    """
    installed = _installed_distributions()
    packages = "".join(f"{name}=={version}\n" for name, version in sorted(installed.items()))
    raw = packages.encode("utf-8")
    accelerators = {
        name: version
        for name, version in installed.items()
        if name in _ACCELERATOR_PACKAGES or name.startswith(_ACCELERATOR_PREFIXES)
    }
    accelerators.update(_nvidia_smi())
    import platform  # here, not at module import: only environment capture needs it

    environment = Environment(
        python=platform.python_version(),
        platform=_oci_platform(sys.platform, platform.machine()),
        packages_digest=f"sha256:{hashlib.sha256(raw).hexdigest()}",
        accelerators=dict(sorted(accelerators.items())),
    )
    return environment, raw


def _normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_distributions() -> dict[str, str]:
    import importlib.metadata  # here: ~20 ms of imports a push with capture=False never needs

    installed: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name, version = _name_and_version(dist.read_text("METADATA") or dist.read_text("PKG-INFO"))
        if name and version:
            installed.setdefault(_normalize_name(name), version)
    return installed


def _name_and_version(metadata: str | None) -> tuple[str, str]:
    """``Name`` and ``Version`` from a core-metadata header, read as plain lines: the
    email parser ``Distribution.metadata`` uses costs ~1 ms a package, a push ~0.1 s."""
    name = version = ""
    for line in (metadata or "").splitlines():
        if not line.strip():
            break  # the end of the header: the description follows
        key, _, value = line.partition(":")
        if key == "Name" and not name:
            name = value.strip()
        elif key == "Version" and not version:
            version = value.strip()
    return name, version


def _oci_platform(system: str, machine: str) -> str:
    os_name = "freebsd" if system.startswith("freebsd") else _OCI_OS.get(system, system)
    arch = _OCI_ARCH.get(machine.lower(), machine.lower())
    return f"{os_name}/{arch}"


def _nvidia_smi() -> dict[str, str]:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return {}
    try:
        process = subprocess.Popen(
            [executable, "--query-gpu=driver_version,name", "--format=csv,noheader"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
    except OSError:
        return {}
    try:
        output, _ = process.communicate(timeout=2)
    except subprocess.TimeoutExpired:
        # A wedged driver is common; do not let it stall the training script's exit.
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=1)
        return {}
    if process.returncode != 0:
        return {}
    drivers: set[str] = set()
    gpus: Counter[str] = Counter()
    for line in output.decode("utf-8", "replace").splitlines():
        driver, _, name = line.partition(",")
        if driver.strip():
            drivers.add(driver.strip())
            gpus[name.strip()] += 1
    if not drivers:
        return {}
    return {
        "nvidia-driver": ", ".join(sorted(drivers)),
        "nvidia-gpu": ", ".join(f"{count}x {name}" for name, count in sorted(gpus.items())),
    }
