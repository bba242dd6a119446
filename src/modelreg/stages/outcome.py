"""What a promote, approve or rollback did: plain data, light to import."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outcome:
    """What a promote/approve/rollback did."""

    status: str  # "promoted", "pending", "unchanged"
    stage: str
    digest: str
    version: int | None
    sequence: int
    signers: tuple[str, ...] = ()
    needed: int = 1
    archived: Outcome | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    proposal: dict[str, object] | None = None  # what an approval signed, field by field

    def to_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "stage": self.stage,
            "digest": self.digest,
            "version": self.version,
            "sequence": self.sequence,
            "signers": list(self.signers),
            "needed": self.needed,
            "archived": self.archived.to_dict() if self.archived else None,
            "notes": list(self.notes),
            "proposal": self.proposal,
        }
