"""The shortcut from a command's name to the module that defines it, checked against the
commands the modules really register (a wrong entry would only make a command start slower,
so nothing else would notice)."""

from __future__ import annotations

from modelreg.cli import app
from modelreg.cli._commands import COMMAND_MODULES, MODULES, load_module


def test_every_command_is_mapped_to_the_module_that_defines_it() -> None:
    for module in MODULES:
        load_module(module)
    defined = {
        info.name or info.callback.__name__: info.callback.__module__
        for info in app.registered_commands
        if info.callback is not None
    }
    for group in app.registered_groups:
        assert group.name is not None
        callback = group.typer_instance.registered_commands[0].callback
        assert callback is not None
        defined[group.name] = callback.__module__
    expected = {name: f"modelreg.cli.{module}" for name, module in COMMAND_MODULES.items()}
    assert defined == expected, "COMMAND_MODULES in cli/_commands.py names each command's module"
