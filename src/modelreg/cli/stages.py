"""Signing keys and stages: key generate, promote, approve, rollback, history, verify."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .. import api, lifecycle
from ..errors import InvalidInput
from ._app import PolicyOption, TrustOption, app, settings, signing_policy, trust_policy
from ._output import JsonFlag, emit_json, say
from ._output import note as say_on_stderr

if TYPE_CHECKING:  # loaded by the commands that sign or verify, not by every command
    from ..lifecycle import PromotionResult
    from ..pending import PendingProposal
    from ..policy import TrustPolicy
    from ..signing import SigningKey

KeyOption = Annotated[Path, typer.Option("--key", "-k", help="Your private signing key.")]
PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file", help="File holding the key's passphrase (or MODELREG_KEY_PASSPHRASE)."
    ),
]

key_app = typer.Typer(help="Signing keys (ECDSA P-256).", no_args_is_help=True)
app.add_typer(key_app, name="key")


def _read_passphrase(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise InvalidInput(f"cannot read passphrase file {path}: {exc.strerror}") from None


RetiredOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--retired",
        help="A former signing key (repeatable): never trusted on reads; only checks the head "
        "a key rotation builds on (as [retired] in a policy).",
    ),
]


def _signer_trust(
    trust: list[Path] | None, policy: Path | None, retired: list[Path] | None
) -> TrustPolicy | None:
    """--policy/--trust (or the configured default), with any --retired keys added."""
    if not retired:
        return signing_policy(trust, policy)
    from ..policy import trust_from_options

    found = trust_from_options(trust or [], policy, home=settings.stores().home, retired=retired)
    if found is None:
        raise InvalidInput(
            "--retired needs the current keys too", "add --trust NEW.pub or --policy FILE"
        )
    return found


def _policy_or_own_key(
    trust: list[Path] | None,
    policy: Path | None,
    key_path: Path,
    key: SigningKey,
    retired: list[Path] | None = None,
) -> TrustPolicy:
    """The configured trust; without one, the signer's own key (named after its file)."""
    from ..policy import TrustPolicy, policy_from_keys

    found = _signer_trust(trust, policy, retired)
    if found is not None:
        return found
    say_on_stderr(
        f"note: no trust policy (--policy, MODELREG_POLICY or $MODELREG_HOME/policy.toml): "
        f"this record is signed and checked with {key_path.name} alone; "
        "readers with a policy will hold it to that policy's rules"
    )
    if retired:
        own = TrustPolicy({key_path.stem: key.public_key})
        return TrustPolicy(own.keys, retired=policy_from_keys(retired).keys)
    return TrustPolicy({key_path.stem: key.public_key})


def _signing_key(path: Path, passphrase_file: Path | None) -> SigningKey:
    passphrase = _read_passphrase(passphrase_file)
    try:
        return api.load_key(path, passphrase)
    except InvalidInput:
        if passphrase is None and api.passphrase_from_env() is None and sys.stdin.isatty():
            entered = typer.prompt(f"Passphrase for {path}", hide_input=True)
            return api.load_key(path, entered.encode())
        raise


@key_app.command("generate")
def key_generate(
    name: Annotated[str, typer.Argument(help="Key name: writes NAME.key and NAME.pub.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the files.")] = Path("."),
    passphrase_file: PassphraseFile = None,
    ask_passphrase: Annotated[
        bool, typer.Option("--passphrase", help="Prompt for a passphrase to encrypt the key.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Generate a signing key pair: NAME.key (mode 0600) and NAME.pub."""
    passphrase = _read_passphrase(passphrase_file)
    if passphrase is None:
        passphrase = api.passphrase_from_env()
    if ask_passphrase and passphrase is None:
        passphrase = typer.prompt("Passphrase", hide_input=True, confirmation_prompt=True).encode()
    from ..signing import generate_keypair

    private, public = generate_keypair(directory, name, passphrase)
    from ..signing import load_public_key

    key_id = load_public_key(public).key_id
    if as_json:
        emit_json({"privateKey": str(private), "publicKey": str(public), "keyId": key_id})
        return
    say(f"private key: {private} (keep it secret)")
    say(f"public key:  {public} (give it to whoever verifies)")
    say(f"key id:      {key_id}")


def _report(outcome: PromotionResult, as_json: bool) -> None:
    if as_json:
        emit_json(outcome.to_dict())
        return
    version = f"v{outcome.version}" if outcome.version else outcome.digest[:19]
    if outcome.status == "unchanged":
        say(f"{outcome.repository} {outcome.stage} already holds {version}")
    elif outcome.status == "pending":
        say(
            f"proposed {version} for {outcome.stage} (record {outcome.sequence}): "
            f"{len(outcome.signers)} of {outcome.needed} signatures; "
            "waiting for 'modelreg approve'"
        )
    else:
        say(
            f"{outcome.stage} -> {version} (record {outcome.sequence}, signed by "
            f"{', '.join(outcome.signers)})"
        )
    if outcome.archived and outcome.archived.status == "promoted":
        archived = outcome.archived
        label = f"v{archived.version}" if archived.version else archived.digest[:19]
        say(f"archived -> {label} (record {archived.sequence})")
    for text in outcome.notes:
        say(text)


@app.command()
def promote(
    reference: Annotated[str, typer.Argument(help="The model: REPO:vN or REPO@DIGEST.")],
    to: Annotated[str, typer.Option("--to", help="Stage: staging, production, …")],
    key: KeyOption,
    passphrase_file: PassphraseFile = None,
    trust: TrustOption = None,
    policy: PolicyOption = None,
    retired: RetiredOption = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Record lifetime, e.g. 90d.")
    ] = None,
    sign_content: Annotated[
        bool,
        typer.Option("--sign-content", help="Also attach a content signature with your key."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Move a stage to a model with a signed promotion record (gated by the policy)."""
    signing_key = _signing_key(key, passphrase_file)
    outcome = lifecycle.promote(
        reference,
        to=to,
        key=signing_key,
        policy=_policy_or_own_key(trust, policy, key, signing_key, retired),
        expires=expires or None,
        stores=settings.stores(),
        sign_content=sign_content,
    )
    _report(outcome, as_json)


@app.command()
def approve(
    reference: Annotated[str, typer.Argument(help="The proposed model: REPO:vN or REPO@DIGEST.")],
    to: Annotated[str, typer.Option("--to", help="The stage it was proposed for.")],
    key: KeyOption,
    passphrase_file: PassphraseFile = None,
    trust: TrustOption = None,
    policy: PolicyOption = None,
    retired: RetiredOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Add your signature to a pending promotion; the stage moves at the threshold.

    The proposal must be signed by a key allowed to sign the stage; every field
    your signature covers is checked and printed (stderr, or "proposal" in --json).
    """
    outcome = lifecycle.approve(
        reference,
        to=to,
        key=_signing_key(key, passphrase_file),
        policy=_signer_trust(trust, policy, retired),
        stores=settings.stores(),
    )
    if outcome.proposal is not None and not as_json:
        _show_proposal(dict(outcome.proposal))
    _report(outcome, as_json)


def _show_proposal(fields: dict[str, object]) -> None:
    say_on_stderr("you signed this proposal, every field checked against the verified stage:")
    for name, value in fields.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        say_on_stderr(f"  {name + ':':12} {'-' if shown is None else shown}")


@app.command()
def rollback(
    repository: Annotated[str, typer.Argument(help="Repository: fraud or HOST/REPO.")],
    stage: Annotated[str, typer.Option("--stage", help="The stage to roll back.")],
    key: KeyOption,
    passphrase_file: PassphraseFile = None,
    trust: TrustOption = None,
    policy: PolicyOption = None,
    retired: RetiredOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Give a stage back to its previous model, with a new, higher signed record."""
    signing_key = _signing_key(key, passphrase_file)
    outcome = lifecycle.rollback(
        repository,
        stage=stage,
        key=signing_key,
        policy=_policy_or_own_key(trust, policy, key, signing_key, retired),
        stores=settings.stores(),
    )
    _report(outcome, as_json)


@app.command()
def history(
    repository: Annotated[str, typer.Argument(help="Repository: fraud or HOST/REPO.")],
    stage: Annotated[str | None, typer.Option("--stage", help="Only this stage.")] = None,
    trust: TrustOption = None,
    policy: PolicyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Every stage move in time order, each verified; then the proposals awaiting approval.

    Exits 7 when any record fails verification.
    """
    found = trust_policy(trust, policy)
    entries = lifecycle.history(repository, stage=stage, policy=found, stores=settings.stores())
    # times have one-second resolution: within a second, an archive follows the move
    ordered = sorted(
        entries, key=lambda e: (e.stored.record.issued_at, e.stored.record.action == "archive")
    )
    waiting = api.pending(repository, stage=stage, policy=found, stores=settings.stores())
    failed = found is not None and any(entry.problem for entry in entries)
    if as_json:
        emit_json([entry.to_dict() for entry in ordered] + [_proposal_row(p) for p in waiting])
        if failed:
            raise typer.Exit(7)
        return
    if not ordered and not waiting:
        say("no promotions yet")
        return
    say(f"{'':2}{'WHEN':21} {'STAGE':12} {'SEQ':>4} {'ACTION':9} {'TO':8} {'FROM':8} SIGNED BY")
    for entry in ordered:
        row = entry.to_dict()
        mark = "✓" if entry.problem is None else "✗"
        to = f"v{row['version']}" if row["version"] else str(row["digest"])[:19]
        source = f"v{row['fromVersion']}" if row["fromVersion"] else str(row["from"] or "-")[:19]
        say(
            f"{mark} {row['issuedAt']:21} {row['stage']:12} {row['sequence']:>4} "
            f"{row['action']:9} {to:8} {source:8} {', '.join(entry.signers)}"
        )
        if entry.problem:
            say(f"    ! {entry.problem}")
    for proposal in waiting:
        to = f"v{proposal.version}" if proposal.version else proposal.digest[:19]
        count = f"{len(proposal.signers)} of {proposal.needed}" if proposal.needed else "?"
        say(
            f"… {proposal.issued_at:21} {proposal.stage:12} {proposal.sequence:>4} "
            f"{'pending':9} {to:8} {'':8} {', '.join(proposal.signers) or '-'} "
            f"({count} signatures; 'modelreg approve' adds one)"
        )
    if found is None:
        say_on_stderr("note: no trust policy given: signers are key ids and nothing was verified")
    if failed:
        say_on_stderr("error: some records failed verification (marked ✗)")
        raise typer.Exit(7)


def _proposal_row(proposal: PendingProposal) -> dict[str, object]:
    return {**proposal.to_dict(), "action": "pending", "proposedAction": proposal.action}


@app.command()
def verify(
    reference: Annotated[
        str, typer.Argument(help="REPO:STAGE (its chain) or REPO:vN / REPO@DIGEST (its content).")
    ],
    trust: TrustOption = None,
    policy: PolicyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Verify a stage's whole signed chain and its tag, or a version's content signatures."""
    trusted = trust_policy(trust, policy)
    if not api.names_stage(reference, policy=trusted, stores=settings.stores()):
        content = api.verify_content(reference, policy=trusted, stores=settings.stores())
        if as_json:
            emit_json(content.to_dict())
            return
        say(f"verified content: {content.repository}@{content.digest}")
        say(f"files signed by {', '.join(content.signers)}")
        return
    verified = lifecycle.verify(reference, policy=trusted, stores=settings.stores())
    if as_json:
        emit_json(verified.to_dict())
        return
    version = f"v{verified.version}" if verified.version else ""
    say(f"verified: {verified.repository}:{verified.stage} -> {version} {verified.digest}")
    signers = ", ".join(verified.signers)
    say(f"record {verified.sequence}, signed by {signers} at {verified.issued_at}")
