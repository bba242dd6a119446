"""The ``modelreg`` command: a thin typer layer over the library.

Errors from the library arrive as ``ModelregError``; they are printed as one
line with a hint and turned into the error's exit code — never a traceback.
"""

from __future__ import annotations

import sys

from ..errors import ModelregError
from ..localfs import local_error
from ._app import app  # its commands' modules load when they run: see _commands


def format_error(error: ModelregError) -> str:
    text = f"error: {error.message}\n"
    if error.hint:
        text += f"hint: {error.hint}\n"
    return text


def main() -> None:
    try:
        app(standalone_mode=True)
    except ModelregError as error:
        sys.stderr.write(format_error(error))
        sys.exit(error.exit_code)
    except OSError as exc:  # a full or read-only disk that no library call translated
        translated = local_error(exc, "modelreg", exc.filename or "its files")
        if translated is None:
            raise
        sys.stderr.write(format_error(translated))
        sys.exit(translated.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)


__all__ = ["app", "format_error", "main"]
