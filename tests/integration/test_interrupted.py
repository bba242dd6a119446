"""A client SIGKILLed mid-transfer leaves nothing a later run would trust.

The kill is real (SIGKILL of a real ``modelreg`` process); only *when* it lands is
arranged, so that every run is provably mid-stream rather than racing a fast copy:

* from a registry, the server (:mod:`hostile_registry`, serving an honest model pushed
  by modelreg) stops sending a layer half way until the test has killed the client;
* from the local store there is no server to hold back, so the child process pauses
  itself: an audit hook (``sys.addaudithook``) sleeps when the N-th file is created in
  the staging directory — earlier files of the same layer are complete, the layer's
  stream is half read. The code under test runs unchanged.

After the kill: the destination is absent (or exactly as it was), no half-written
directory sits under a name anything trusts, and running again succeeds and verifies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.hostile_registry import HostileRegistry, Reply, gated
from helpers.models import unique_repo
from test_hostile import run_cli, snapshot

from modelreg import Resolver, api
from modelreg.oci import ANNOTATION_LAYER_TITLE
from modelreg.policy import policy_from_keys
from modelreg.reference import parse_reference
from modelreg.signing import load_signing_key
from modelreg.store import Stores

MiB = 1024 * 1024
DEADLINE = 60.0  # fail-fast bound for waiting on the child; never an assertion on speed

# Run the modelreg CLI, or a Resolver fetch, and sleep when the N-th file whose path
# contains MARKER is created (O_EXCL: how unpacking creates every file).
PAUSING = """
import os, sys, time
marker, nth = sys.argv[1], int(sys.argv[2])
created = 0
def pause(event, args):
    global created
    if event != "open" or len(args) < 3 or not isinstance(args[2], int):
        return
    if args[2] & os.O_EXCL and marker in os.fsdecode(args[0]):
        created += 1
        if created == nth:
            print("paused", flush=True)
            time.sleep(3600)
sys.addaudithook(pause)
command = sys.argv[3:]
if command[0] == "fetch":
    from pathlib import Path
    from modelreg import Resolver
    from modelreg.store import Stores
    _, repository, trust, cache = command
    resolver = Resolver(trust=[trust], cache_dir=cache, stores=Stores())
    print(resolver.fetch(resolver.resolve(repository)))
else:
    from modelreg.cli import main
    sys.argv = ["modelreg", *command]
    main()
"""


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def layered_model(root: Path) -> Path:
    """Six 3 MiB files sharing one layer (so a pause after three is mid-layer) and a
    9 MiB file in a layer of its own."""
    root.mkdir()
    for name in "abcdef":
        (root / f"{name}.bin").write_bytes(os.urandom(3 * MiB))
    (root / "weights.bin").write_bytes(os.urandom(9 * MiB))
    return root


def start_pausing(*args: str, marker: str, nth: int) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", PAUSING, marker, str(nth), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return child


def wait_until_paused(child: subprocess.Popen[str]) -> None:
    assert child.stdout is not None
    line = child.stdout.readline()  # the child prints before it sleeps; EOF if it died
    if line.strip() != "paused":
        child.kill()
        _, err = child.communicate(timeout=DEADLINE)
        pytest.fail(f"the child did not pause: {line!r} {err}")


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=DEADLINE)
    assert child.returncode == -signal.SIGKILL


def prepare(out: Path, destination: str) -> tuple[Path, list[str]]:
    """An ``absent`` destination, or an ``existing`` one that --force will replace."""
    if destination == "absent":
        return out, []
    out.mkdir()
    (out / "weights.bin").write_bytes(b"the model we had")
    return out, ["--force"]


def only_hidden_leftovers(before: dict, after: dict) -> None:
    """Whatever the killed run left is under a hidden staging name that nothing trusts."""
    added = [path for path in after if path not in before]
    assert all(Path(path).parts[0].startswith(".out.partial-") for path in added), added
    assert {path: after[path] for path in before} == before


# ----- modelreg pull from a registry ----------------------------------------------------------


@pytest.mark.parametrize("destination", ["absent", "existing"])
def test_killed_pull_from_a_registry(
    hostile: HostileRegistry, stores: Stores, tmp_path: Path, destination: str
) -> None:
    model = layered_model(tmp_path / "model")
    local = unique_repo("seed")
    pushed = api.push(model, local, capture=False, stores=stores)
    hostile.load("ml/x", stores.repository(parse_reference(local)))
    weights = next(
        layer
        for layer in api.inspect(pushed.reference, stores=stores).manifest.layers
        if layer.annotations.get(ANNOTATION_LAYER_TITLE) == "weights.bin"
    )
    path = hostile.blob_path("ml/x", weights.digest)
    gate = hostile.gate()
    data = hostile.repo("ml/x").blobs[weights.digest]
    hostile.override(path, Reply(200, gated(data, 4 * MiB, gate), length=len(data)))
    out, extra = prepare(tmp_path / "out", destination)
    before = snapshot(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-m", "modelreg", "pull", f"{hostile.host}/ml/x@{pushed.digest}",
         str(out), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + DEADLINE
    partial: list[Path] = []
    while time.monotonic() < deadline and child.poll() is None:
        partial = [p for p in tmp_path.glob(".out.partial-*/weights.bin") if p.stat().st_size]
        if partial and hostile.sent.get(path, 0) >= 4 * MiB:
            break
        time.sleep(0.01)
    assert partial, "the pull never got half way"
    assert child.poll() is None
    assert 0 < partial[0].stat().st_size < 9 * MiB  # mid-stream: a half-written file
    child.send_signal(signal.SIGKILL)
    child.wait(DEADLINE)
    only_hidden_leftovers(before, snapshot(tmp_path))
    gate.set()
    again = run_cli("pull", f"{hostile.host}/ml/x@{pushed.digest}", str(out), *extra, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert files_of(out) == files_of(model)


# ----- modelreg pull from the local store ------------------------------------------------------


@pytest.mark.parametrize("destination", ["absent", "existing"])
def test_killed_pull_from_the_local_store(stores: Stores, tmp_path: Path, destination: str) -> None:
    model = layered_model(tmp_path / "model")
    repository = unique_repo("fraud")
    pushed = api.push(model, repository, capture=False, stores=stores)
    out, extra = prepare(tmp_path / "out", destination)
    before = snapshot(tmp_path)
    # one layer at a time, so that the pause point is the same on every run
    args = ["pull", f"{repository}@{pushed.digest}", str(out), "--concurrency", "1", *extra]
    child = start_pausing(*args, marker=".out.partial-", nth=4)
    wait_until_paused(child)
    staged = sorted(p.name for p in tmp_path.glob(".out.partial-*/*"))
    assert staged == ["a.bin", "b.bin", "c.bin"]  # paused as it creates d.bin
    kill(child)
    only_hidden_leftovers(before, snapshot(tmp_path))
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert files_of(out) == files_of(model)


# ----- the Resolver's cache, fed from the local store -----------------------------------------


def test_killed_fetch_from_the_local_store(stores: Stores, keys: Path, tmp_path: Path) -> None:
    model = layered_model(tmp_path / "model")
    repository = unique_repo("fraud")
    pushed = api.push(model, repository, capture=False, stores=stores)
    api.promote(
        f"{repository}@{pushed.digest}",
        "production",
        load_signing_key(keys / "alice.key"),
        policy=policy_from_keys([keys / "alice.pub"]),
        stores=stores,
    )
    cache = tmp_path / "cache"
    trust = str(keys / "alice.pub")
    marker = str(cache / "layers" / ".tmp-")
    child = start_pausing("fetch", repository, trust, str(cache), marker=marker, nth=4)
    wait_until_paused(child)
    kill(child)
    layers = cache / "layers"
    assert [p.name for p in layers.iterdir() if not p.name.startswith(".tmp-")] == []
    assert list((cache / "models").iterdir()) == []
    assert [p.name for p in layers.glob(".tmp-*/*")] == ["a.bin", "b.bin", "c.bin"]
    resolver = Resolver(trust=[trust], cache_dir=cache, stores=stores)
    fetched = resolver.fetch(resolver.resolve(repository))
    assert files_of(fetched) == files_of(model)
    assert fetched == cache / "models" / pushed.digest[7:]
