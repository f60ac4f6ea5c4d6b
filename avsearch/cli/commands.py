"""Every command, in the order `avsearch --help` lists them, and the module that defines it.

A command's module is imported when the command is looked up (to run it, show its help or complete it):
a cold `avsearch info` imports info's module, not the twelve others and what they import (rich's
progress bars, JSON, the media helpers of index and embed, ...). `avsearch --help` and completion of
command names look every command up, so they import them all, as before. Each module exposes
register(app), which adds its commands to a Typer app.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from importlib import import_module
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup
from typer.models import DefaultPlaceholder, TyperInfo

from avsearch.cli.common import reflow_help
from avsearch.cli.plain_options import PlainCommand, PlainGroup, PlainParams

COMMANDS = {  # command -> module of avsearch.cli
    "weights": "weights",  # list model weight files
    "embed": "embed",  # media/captions -> {modality}.{space}.npy
    "train": "train",  # fit a C-MCR bridge
    "calibrate": "calibrate",  # a bridge's scores calibrated on real pairs
    "project": "project",  # native embeddings -> shared space
    "index": "index",  # build/update a search index over a media folder
    "query": "query",  # cross-modal queries
    "info": "info",  # what an index holds
    "serve": "serve",  # HTTP API and web gallery over an index
    "classify3d": "classify3d",  # zero-shot 3D classification
    "localize": "localize",  # where a sound is in a picture
    "match": "localize",  # does it belong
    "eval": "evaluate",  # `avsearch eval ...` (retrieval, localize, counterfactual, classify3d)
}


def module_app(module: str) -> typer.Typer:
    """A Typer app holding the commands (and groups) that avsearch.cli.<module> registers, help reflowed."""
    app = typer.Typer()
    import_module(f"avsearch.cli.{module}").register(app)
    reflow_help(app)
    return app


class _LazyCommands(MutableMapping[str, Any]):
    """A group's name -> click command map whose commands are built on first access, module by module.

    The keys are every command's name (for "no such command" suggestions) without importing anything."""

    def __init__(self, group: TyperGroup) -> None:
        self._group = group
        self._built: dict[str, Any] = {}

    def _build(self, module: str) -> None:
        app = module_app(module)
        settings = {
            "pretty_exceptions_short": app.pretty_exceptions_short,
            "rich_markup_mode": self._group.rich_markup_mode,
        }
        for info in app.registered_commands:
            info.cls = _plain_command(info.cls)
            command = typer.main.get_command_from_info(info, **settings)
            self._built.setdefault(command.name or "", command)
        for group_info in app.registered_groups:
            _plain_classes(group_info)
            group = typer.main.get_group_from_info(
                group_info, suggest_commands=self._group.suggest_commands, **settings
            )
            self._built.setdefault(group.name or "", group)

    def __getitem__(self, name: str) -> Any:
        if name not in self._built and name in COMMANDS:
            self._build(COMMANDS[name])
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._built if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS.keys() | self._built.keys())

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._built


def _plain_classes(group_info: TyperInfo) -> None:
    """A group (and its commands and sub-groups) made of the classes whose plain options parse without
    pydantic (cli/plain_options.py), where the module did not choose classes of its own."""
    app = group_info.typer_instance
    if app is None:
        return
    chosen = [c for c in (group_info.cls, app.info.cls) if not isinstance(c, DefaultPlaceholder) and c is not None]
    if not chosen or chosen[0] is TyperGroup:
        group_info.cls = PlainGroup
    for info in app.registered_commands:
        info.cls = _plain_command(info.cls)
    for sub in app.registered_groups:
        _plain_classes(sub)


def _plain_command(cls: type[TyperCommand] | None) -> type[TyperCommand] | None:
    """PlainCommand where a module left Typer's default command class."""
    return PlainCommand if cls in (None, TyperCommand) else cls


class LazyGroup(PlainParams, TyperGroup):
    """The root `avsearch` group: its commands come from COMMANDS, imported when looked up."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        commands = _LazyCommands(self)
        for name, command in self.commands.items():  # any registered on the app itself
            commands[name] = command
        self.commands = commands
