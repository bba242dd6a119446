"""The typer application, its global options and the shared context."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._commands import LazyGroup

if TYPE_CHECKING:  # the trust stack (cryptography) loads only for commands that verify
    from ..policy import TrustPolicy
    from ..store import Stores

app = typer.Typer(
    name="modelreg",
    cls=LazyGroup,
    help="A model registry on any OCI registry: push, version, promote and resolve models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class Settings:
    home: Path | None = None
    ca_cert: str | None = None
    timeout: float | None = None
    plain_http: bool | None = None
    _stores: Stores | None = field(default=None, repr=False)

    def stores(self) -> Stores:
        if self._stores is None:
            from ..store import RegistryOptions, Stores

            options = RegistryOptions.from_env(
                ca_cert=self.ca_cert, timeout=self.timeout, plain_http=self.plain_http
            )
            self._stores = Stores(home=self.home, options=options)
        return self._stores


settings = Settings()


TrustOption = Annotated[
    list[Path] | None,
    typer.Option("--trust", help="Public key trusted to sign stages (repeatable)."),
]
PolicyOption = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        help="Trust policy file (keys, thresholds, gates) "
        "[default: $MODELREG_POLICY, else $MODELREG_HOME/policy.toml].",
    ),
]


def trust_policy(trust: list[Path] | None, policy: Path | None) -> TrustPolicy | None:
    """--policy/--trust, else $MODELREG_POLICY, $MODELREG_TRUST or $MODELREG_HOME/policy.toml."""
    from ..policy import trust_from_options

    return trust_from_options(trust or [], policy, home=settings.stores().home)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"modelreg {__version__}")
        raise typer.Exit()


def signing_policy(trust: list[Path] | None, policy: Path | None) -> TrustPolicy | None:
    """The trust a stage is *written* under: the policy from --policy, $MODELREG_POLICY or
    $MODELREG_HOME/policy.toml whenever there is one (--trust keys only add to it), so a
    move can never be committed under laxer rules than the ones its readers apply."""
    if policy is None and trust:
        if os.environ.get("MODELREG_POLICY"):
            policy = Path(os.environ["MODELREG_POLICY"])
        elif (settings.stores().home / "policy.toml").is_file():
            policy = settings.stores().home / "policy.toml"
    return trust_policy(trust, policy)


@app.callback()
def _global_options(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", envvar="MODELREG_HOME", help="Local store and caches [default: ~/.modelreg]."
        ),
    ] = None,
    ca_cert: Annotated[
        str | None,
        typer.Option("--ca-cert", help="CA bundle for registries with a private CA."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds to wait for an unreachable registry [5]."),
    ] = None,
    plain_http: Annotated[
        bool | None,
        typer.Option("--plain-http", help="Talk plain HTTP to the registry (loopback: automatic)."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    settings.home = home
    settings.ca_cert = ca_cert
    settings.timeout = timeout
    settings.plain_http = plain_http
    settings._stores = None
