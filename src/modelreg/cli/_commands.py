"""Command modules load when their command runs, not when ``modelreg`` starts.

``modelreg resolve`` in a deploy script should cost what resolving costs, not the import
of every command's library (push machinery, formats, lineage, the web UI). The typer
app is the one definition of every command; this group only defers importing the
module that registers a command until click asks for that command. ``--help`` and
shell completion list every command, so they load them all.

``COMMAND_MODULES`` is a shortcut, not a registry: a command missing from it still
works (every module is loaded before a name is declared unknown), it only starts slower.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer.main

from ._help import ModelregGroup, _word_metavars

# command -> the cli module that defines it, in the order ``--help`` lists them
COMMAND_MODULES: dict[str, str] = {
    "login": "auth", "logout": "auth",
    "docker-load": "docker",
    "import": "imports", "modelpack": "imports",
    "versions": "lineage", "show": "lineage", "lineage": "lineage", "diff": "lineage",
    "push": "models", "pull": "models", "inspect": "models", "copy": "models", "tag": "models",
    "gc": "retention",
    "promote": "stages", "approve": "stages", "rollback": "stages", "history": "stages",
    "verify": "stages", "key": "stages",
    "resolve": "resolve",
    "ls": "ui", "ui": "ui",
}  # fmt: skip
MODULES = tuple(dict.fromkeys(COMMAND_MODULES.values()))


def load_module(module: str) -> None:
    """Import ``modelreg.cli.MODULE``; its decorators register its commands on the app."""
    importlib.import_module(f"{__package__}.{module}")


class LazyGroup(ModelregGroup):
    """The top-level group; a command's module is imported when the command is asked for."""

    def _adopt_registered(self) -> None:
        from ._app import app

        for name, command in typer.main.get_group(app).commands.items():
            if name not in self.commands:
                _word_metavars(command)
                self.commands[name] = command

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        module = COMMAND_MODULES.get(cmd_name)
        for name in (module,) if module else MODULES:
            load_module(name)
        self._adopt_registered()
        found = super().get_command(ctx, cmd_name)
        if found is None and module is not None:  # the shortcut was wrong: look everywhere
            for name in MODULES:
                load_module(name)
            self._adopt_registered()
            found = super().get_command(ctx, cmd_name)
        return found

    def list_commands(self, ctx: Any) -> list[str]:
        for module in MODULES:
            load_module(module)
        self._adopt_registered()
        order = {name: index for index, name in enumerate(COMMAND_MODULES)}
        return sorted(self.commands, key=lambda name: (order.get(name, len(order)), name))
