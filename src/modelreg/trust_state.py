"""What this client last accepted for each stage, so a replayed or forked chain is refused.

One small JSON file, updated under an exclusive lock with write-then-rename, so
several processes sharing it (a CLI, a resolver cache) never lose an update.
The sequence it remembers only grows.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import VerificationError


@dataclass(frozen=True)
class Accepted:
    sequence: int
    payload: str  # payload digest of the accepted head record
    record: str  # manifest digest of that record
    target: str  # the model digest it promoted
    version: int | None = None
    verified_at: float = 0.0
    signers: list[str] = field(default_factory=list)
    issued_at: str = ""
    expires_at: str | None = None
    replaces: str | None = None  # what the stage held before that record


class TrustState:
    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def key(store_id: str, repository: str, stage: str, policy: str) -> str:
        return f"{store_id}|{repository}|{stage}|{policy}"

    @staticmethod
    def prefix(store_id: str, repository: str, stage: str) -> str:
        """The part of :meth:`key` shared by every policy's memory of one stage."""
        return f"{store_id}|{repository}|{stage}|"

    def remembered(self, prefix: str) -> list[Accepted]:
        """Every head accepted for one stage (see :meth:`prefix`), under any policy."""
        found = []
        for key, entry in self._read().items():
            if key.startswith(prefix) and isinstance(entry, dict):
                try:
                    found.append(Accepted(**entry))
                except TypeError:
                    continue
        return found

    def remembers_stage(self, store_id: str, repository: str, stage: str) -> bool:
        return bool(self.remembered(self.prefix(store_id, repository, stage)))

    def adopt(self, legacy: Path) -> None:
        """Merge another state file (an older layout's) into this one, keeping the newer heads.

        Nothing is forgotten: a head remembered in either file is remembered after.
        """
        try:
            old = json.loads(legacy.read_bytes())
        except (OSError, ValueError):
            return
        if not isinstance(old, dict):
            return
        with self._locked():
            data = self._read()
            changed = False
            for key, entry in old.items():
                current = data.get(key)
                newer = isinstance(entry, dict) and (
                    not isinstance(current, dict)
                    or int(entry.get("sequence", 0)) > int(current.get("sequence", 0))
                )
                if newer:
                    data[key] = entry
                    changed = True
            if changed:
                self._write(data)

    def get(self, key: str) -> Accepted | None:
        entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            return Accepted(**entry)
        except TypeError:
            return None

    def accept(self, key: str, accepted: Accepted) -> None:
        """Remember ``accepted`` unless it would move the sequence backwards.

        A new head is written (and fsynced) at once. The same head verified again
        only refreshes ``verified_at``, which is written at most every
        ``REFRESH_EVERY`` seconds: a warm resolve must not cost an fsync, and an
        older ``verified_at`` only makes an offline answer look staler than it is.
        """
        with self._locked():
            data = self._read()
            current = data.get(key)
            if isinstance(current, dict) and current.get("sequence", 0) > accepted.sequence:
                raise VerificationError(
                    f"refusing to go back from sequence {current['sequence']} to "
                    f"{accepted.sequence} for {key.split('|', 1)[1]}",
                    "a replayed older record was offered",
                )
            entry = asdict(accepted)
            if isinstance(current, dict) and _only_refreshed(current, entry):
                return
            data[key] = entry
            self._write(data)

    def _read(self) -> dict[str, Any]:
        try:
            value = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise VerificationError(
                f"trust state {self.path} is corrupted",
                "inspect it; delete it only if you accept re-trusting the current heads",
            ) from None
        return value if isinstance(value, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        fd, name = tempfile.mkstemp(prefix=".trust-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(name, self.path)
        finally:
            Path(name).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


REFRESH_EVERY = 30.0


def _only_refreshed(current: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether ``new`` is ``current`` verified again, recently enough not to write."""
    same = {k: v for k, v in current.items() if k != "verified_at"} == {
        k: v for k, v in new.items() if k != "verified_at"
    }
    age = float(new["verified_at"]) - float(current.get("verified_at") or 0.0)
    return same and 0 <= age < REFRESH_EVERY
