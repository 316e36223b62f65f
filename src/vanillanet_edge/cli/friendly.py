"""One rule for every command: our errors print as one red paragraph (message and hint) and
exit with code 2, without a traceback; anything else is a bug and keeps its traceback."""
from __future__ import annotations

import sys

import click

from ..errors import VanillaNetEdgeError


class FriendlyErrors:
    """Mixin for click.Command / click.Group."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VanillaNetEdgeError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)


class FriendlyGroup(FriendlyErrors, click.Group):
    pass


class FriendlyCommand(FriendlyErrors, click.Command):
    pass
