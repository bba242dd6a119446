"""The real CLI, in-process (fast) or as a subprocess (exit codes, signals)."""

from __future__ import annotations

import os
import subprocess
import sys

from typer.testing import CliRunner

from modelreg.cli import app, format_error
from modelreg.errors import ModelregError


class Cli:
    """Runs the real CLI in-process (fast) or as a subprocess (exit codes, signals)."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        from modelreg.cli import _app

        _app.settings._stores = None
        try:
            result = self.runner.invoke(app, list(args), input=input, catch_exceptions=True)
        finally:
            _app.settings._stores = None
        code = result.exit_code
        stderr = result.stderr if result.stderr_bytes is not None else ""
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            error = result.exception
            if not isinstance(error, ModelregError):
                raise error
            stderr += format_error(error)
            code = error.exit_code
        return subprocess.CompletedProcess(list(args), code, result.stdout, stderr)

    @staticmethod
    def process(
        *args: str,
        input: str | None = None,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "modelreg", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
