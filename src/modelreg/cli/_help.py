"""How ``modelreg --help`` reads: commands grouped by workflow, summaries never cut,
and metavars that are words (REF, PATH, DIR, KEY) rather than ``{reference}``/``<str>``.

Applied once to the click group typer builds, so command modules need no edits: a
command from another module lands in its panel by name (or by its own
``rich_help_panel``), otherwise under "Other commands".
"""

from __future__ import annotations

from typing import Any

import typer.core

PANELS: dict[str, tuple[str, ...]] = {
    "Models": (
        "push", "pull", "versions", "show", "lineage", "diff", "inspect", "copy", "tag",
        "import", "modelpack", "ls",
    ),
    "Stages (signed promotion)": ("key", "promote", "approve", "rollback", "history", "verify"),
    "Serving and deploying": ("resolve", "docker-load", "ui"),
    "Maintenance and registries": ("gc", "login", "logout"),
}  # fmt: skip
_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}

REFERENCE_NOTE = (
    "A reference is [HOST[:PORT]/]REPO[:TAG][@sha256:DIGEST]: a plain name is the "
    "local store, HOST/REPO a registry; no tag means the latest version; "
    "REPO:STAGE is verified through its signed chain. See README 'References'."
)

# argument name -> metavar
_ARGUMENTS = {
    "reference": "REF", "source": "REF", "first": "REF", "second": "REF",
    "repository": "REPO", "destination": "DEST", "path": "PATH", "name": "NAME",
    "alias": "TAG", "host": "HOST",
}  # fmt: skip
# option -> metavar (others: their long name, upper-cased)
_OPTIONS = {
    "--trust": "PUBKEY", "--policy": "FILE", "--retention": "FILE", "--key": "KEY",
    "--sign": "KEY", "--to": "STAGE", "--stage": "STAGE", "-p": "KEY=VALUE",
    "-m": "KEY=NUMBER", "--annotation": "KEY=VALUE", "--home": "DIR", "--dir": "DIR",
    "--code-dir": "DIR", "--where": "FILTER", "--expires": "DURATION",
    "--older-than": "DURATION", "--keep-production-window": "DURATION",
    "--timeout": "SECONDS", "--ca-cert": "PATH", "--passphrase-file": "PATH",
    "--params": "PATH", "--metrics": "PATH", "--signature": "PATH", "--keep-last": "N",
    "--docker-host": "URL", "--username": "USER", "--format": "FORMAT",
}  # fmt: skip


class _WordArgument(typer.core.TyperArgument):
    def make_metavar(self, ctx: Any, *, usage: bool = False) -> str:
        var = self.metavar or (self.name or "").upper()
        return var if self.required or not usage else f"[{var}]"


def _word_metavars(command: Any) -> None:
    for param in command.params:
        if param.metavar is not None:
            continue
        if isinstance(param, typer.core.TyperArgument):
            param.metavar = _ARGUMENTS.get(param.name or "", (param.name or "").upper())
            param.__class__ = _WordArgument
        elif isinstance(param, typer.core.TyperOption) and not param.is_flag:
            names = [*param.opts, *param.secondary_opts]
            word = next((_OPTIONS[n] for n in names if n in _OPTIONS), None)
            if word is None:
                longest = max(names, key=len).lstrip("-")
                word = "PATH" if "Path" in type(param.type).__name__ else longest.upper()
            param.metavar = word
    if isinstance(command, typer.core.TyperGroup):
        for sub in command.commands.values():
            _word_metavars(sub)


class ModelregGroup(typer.core.TyperGroup):
    """The top-level group: word metavars everywhere, and the command list by panel."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        _word_metavars(self)
        return super().make_context(info_name, args, parent, **extra)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        groups: dict[str, list[tuple[str, str]]] = {panel: [] for panel in PANELS}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            panel = getattr(command, "rich_help_panel", None) or _PANEL_OF.get(
                name, "Other commands"
            )
            summary = command.get_short_help_str(limit=10_000)
            groups.setdefault(panel, []).append((name, summary))
        for panel, rows in groups.items():
            if rows:
                with formatter.section(panel):
                    formatter.write_dl(rows)
        with formatter.section("References"):
            formatter.write_text(REFERENCE_NOTE)
