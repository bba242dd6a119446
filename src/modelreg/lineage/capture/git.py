"""Code capture: the state of the git work tree a model was trained from."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Final

from ...errors import InvalidInput, NotFound
from ..model import CodeInfo
from ..values import one_line
from .urls import stored_url

# Pinned so that the digest does not depend on the user's git config.
_DIFF_FLAGS: Final = (
    "--binary",
    "--full-index",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--no-renames",
    "--no-relative",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    "--submodule=short",
    "--diff-algorithm=myers",
    "--indent-heuristic",
    "--unified=3",
    "--inter-hunk-context=0",
)


def _git_command(directory: Path, *args: str) -> list[str]:
    # core.fsmonitor could name a program from the repo's own config; never run it.
    return ["git", "-c", "core.fsmonitor=false", "-C", str(directory), *args]


def _git_env() -> dict[str, str]:
    # No optional index lock: capture must not race a concurrent git in the same tree.
    return {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        _git_command(directory, *args),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=_git_env(),
        check=False,
    )


def capture_code(directory: Path) -> CodeInfo | None:
    """Describe the git work tree containing ``directory``.

    Returns None when ``directory`` is not in a git work tree, the repository has
    no commit yet, or git is not installed. Runs four git commands at most, all
    local.
    """
    if not directory.is_dir():
        raise NotFound(
            f"code directory does not exist: {directory}",
            hint="pass the directory of the training code's git work tree",
        )
    try:
        head = _git(
            directory, "rev-parse", "--is-inside-work-tree", "HEAD", "--symbolic-full-name", "HEAD"
        )
    except FileNotFoundError:
        return None
    if head.returncode != 0:
        if b"dubious ownership" in head.stderr:
            raise InvalidInput(
                f"git refuses to read {directory}: the repository belongs to another user",
                hint="if you trust it: git config --global --add safe.directory "
                "<the repository's top directory>",
            )
        return None
    lines = head.stdout.decode("utf-8", "replace").splitlines()
    if len(lines) != 3 or lines[0] != "true":
        return None
    commit, ref = lines[1], lines[2]
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None

    status = _git(directory, "status", "--porcelain", "-z", "--untracked-files=normal")
    if status.returncode != 0:
        raise InvalidInput(
            f"git status failed in {directory}: "
            f"{one_line(status.stderr.decode('utf-8', 'replace'))}",
            hint=f"run 'git -C {directory} status' to see why",
        )
    dirty = bool(status.stdout)
    remote = _git(directory, "remote", "get-url", "origin")
    remote_url = remote.stdout.decode("utf-8", "replace").strip() if remote.returncode == 0 else ""
    return CodeInfo(
        commit=commit,
        branch=branch,
        dirty=dirty,
        diff_digest=_diff_digest(directory) if dirty else None,
        remote=stored_url(remote_url) if remote_url else None,
    )


def _diff_digest(directory: Path) -> str:
    # Streamed: a changed large tracked file can make a diff of gigabytes.
    digest = hashlib.sha256()
    with subprocess.Popen(
        _git_command(directory, "diff", "HEAD", *_DIFF_FLAGS),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=_git_env(),
    ) as process:
        assert process.stdout is not None
        while chunk := process.stdout.read(1 << 20):
            digest.update(chunk)
    if process.returncode != 0:
        raise InvalidInput(
            f"git diff HEAD failed in {directory} (exit code {process.returncode})",
            hint=f"run 'git -C {directory} diff HEAD' to see why",
        )
    return f"sha256:{digest.hexdigest()}"
