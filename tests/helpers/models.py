"""Model directories and repository names for tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

MakeModel = Callable[..., Path]


def write_model(root: Path, *, large: int = 9 * 1024 * 1024, seed: bytes = b"") -> Path:
    """A model directory: one large weights file, small config files, a subdirectory."""
    root.mkdir(parents=True, exist_ok=True)
    block = (
        os.urandom(1024 * 1024) if not seed else (seed * (1024 * 1024 // len(seed) + 1))[: 1 << 20]
    )
    with open(root / "weights.bin", "wb") as handle:
        for index in range(large // len(block)):
            handle.write(block[:-8] + index.to_bytes(8, "big"))
        handle.write(block[: large % len(block)])
    (root / "config.json").write_text('{"hidden": 768}\n')
    (root / "tokenizer").mkdir(exist_ok=True)
    (root / "tokenizer" / "vocab.txt").write_text("a\nb\nc\n")
    run = root / "serve.sh"
    run.write_text("#!/bin/sh\necho serve\n")
    run.chmod(0o755)
    return root


_counter = iter(range(1_000_000))


def unique_repo(prefix: str = "ml/model") -> str:
    return f"{prefix}-{os.getpid()}-{next(_counter)}"
