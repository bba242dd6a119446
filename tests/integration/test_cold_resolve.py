"""What a cold ``modelreg resolve`` process imports: the resolver, the trust stack and the
small-request HTTP path, not the library behind every other command. Speed itself is
measured in scripts/bench-llm; this pins the import set that speed comes from."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers.models import unique_repo, write_model
from helpers.registry import Registry

from modelreg import api
from modelreg.policy import policy_from_keys
from modelreg.signing import load_signing_key
from modelreg.store import Stores

# what only other commands (push, pull, lineage, the UI, …) or the full HTTP path need
NOT_IMPORTED = (
    "requests", "urllib3", "rich", "zstandard", "docker", "starlette", "uvicorn", "jinja2",
    "tomllib",  # only a policy file is TOML
    "cryptography.hazmat.primitives.serialization",  # a modelreg .pub is read without it
    "modelreg.api", "modelreg.lifecycle", "modelreg.transfer", "modelreg.packing",
    "modelreg.formats", "modelreg.partial", "modelreg.selection", "modelreg.lineage",
    "modelreg.versions", "modelreg._push_parts", "modelreg.importing", "modelreg.ui",
    "modelreg.stages.move", "modelreg.stages.log", "modelreg.cli.models",
    "modelreg.cli.stages", "modelreg.cli.lineage", "modelreg.cli.ui",
)  # fmt: skip


# ``python -m modelreg ARGS`` that lists sys.modules on stderr as the process exits
_LISTING = """
import atexit, runpy, sys
atexit.register(lambda: sys.stderr.write("\\nmodules: " + " ".join(sorted(sys.modules)) + "\\n"))
sys.argv[0] = "modelreg"
runpy.run_module("modelreg", run_name="__main__", alter_sys=True)
"""


def imported_by(args: list[str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``modelreg ARGS`` in a fresh interpreter: its result and every module it imported."""
    done = subprocess.run(
        [sys.executable, "-c", _LISTING, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    listed = re.findall(r"^modules: (.*)$", done.stderr, re.M)
    assert len(listed) == 1, done.stderr[-2000:]
    return done, set(listed[0].split())


def test_a_cold_resolve_imports_only_what_resolving_needs(
    registry: Registry, stores: Stores, keys: Path, tmp_path: Path
) -> None:
    target = f"{registry.host}/{unique_repo('cold')}"
    pushed = api.push(write_model(tmp_path / "m"), target, capture=False, stores=stores)
    api.promote(
        f"{target}:v1",
        "production",
        load_signing_key(keys / "alice.key"),
        policy=policy_from_keys([keys / "alice.pub"]),
        stores=stores,
    )

    done, modules = imported_by(["resolve", target, "--trust", str(keys / "alice.pub")])

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == pushed.digest  # still the verified answer
    # the listing is real: the resolving side is in it
    assert {"modelreg.cli.resolve", "modelreg.resolver", "modelreg.stages.verify"} <= modules
    loaded = sorted(
        name for name in modules if any(name == n or name.startswith(n + ".") for n in NOT_IMPORTED)
    )
    assert loaded == []


def test_another_commands_modules_load_when_it_runs(keys: Path) -> None:
    done, modules = imported_by(["key", "--help"])
    assert done.returncode == 0 and "generate" in done.stdout
    assert "modelreg.cli.stages" in modules and "modelreg.cli.models" not in modules
    done, modules = imported_by(["--help"])  # the list names every command
    assert done.returncode == 0 and "resolve" in done.stdout and "push" in done.stdout
    assert {"modelreg.cli.models", "modelreg.cli.stages", "modelreg.cli.resolve"} <= modules
