"""Stages: promote, approve, roll back, archive, history, verify.

A stage (``staging``, ``production``, ``archived``, or any name a team uses) is
a chain of signed promotion records (see :mod:`..promotion`) plus a movable tag
of the same name that plain clients can pull. Trust never comes from the tag:
every read verifies the chain against a :class:`~..policy.TrustPolicy` and
checks the tag agrees with it.

- :mod:`.chain`: reading a chain and the checks every reader shares
- :mod:`.verify`: ``verify_stage``, what a stage holds, fail closed
- :mod:`.move`: ``promote``, ``approve``, ``rollback`` (and archiving)
- :mod:`.gates`: the policy's ``requires`` and metric gates on a promotion
- :mod:`.log`: ``history``, every record, each checked on its own
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

# name -> submodule; each loads on first use, so a reader (``verify_stage``) does not
# import the writing side (signing keys, gates, proposals) or the history's version listing
_EXPORTS = {
    "stage_sequences": "chain",
    "verified_chain": "chain",
    "HistoryEntry": "log",
    "history": "log",
    "ARCHIVED": "move",
    "PRODUCTION": "move",
    "Outcome": "outcome",
    "approve": "move",
    "promote": "move",
    "rollback": "move",
    "VerifiedStage": "verify",
    "verify_stage": "verify",
}

if TYPE_CHECKING:
    from .chain import stage_sequences, verified_chain
    from .log import HistoryEntry, history
    from .move import ARCHIVED, PRODUCTION, approve, promote, rollback
    from .outcome import Outcome
    from .verify import VerifiedStage, verify_stage


__getattr__ = lazy_names(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "ARCHIVED",
    "PRODUCTION",
    "HistoryEntry",
    "Outcome",
    "VerifiedStage",
    "approve",
    "history",
    "promote",
    "rollback",
    "stage_sequences",
    "verified_chain",
    "verify_stage",
]
