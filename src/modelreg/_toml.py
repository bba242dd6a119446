"""Reading the TOML files a user hands modelreg (trust and retention policies)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .errors import InvalidInput, NotFound


def load_toml_file(path: Path, what: str) -> dict[str, Any]:
    """The parsed file; NotFound or InvalidInput naming ``what`` (e.g. "policy file")."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise NotFound(f"{what} not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{what} {path} is not valid TOML: {exc}") from None
    except OSError as exc:  # a directory, no permission
        raise InvalidInput(
            f"cannot read {what} {path}: {exc.strerror}", "pass a readable TOML file"
        ) from None
