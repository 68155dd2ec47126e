"""Entry point of the ``numbacnn`` command: a Click group whose subcommands live in
one module each (``shapes``, ``train``, ``data`` ...).

Errors a user can cause are :class:`numbacnn.errors.NumbacnnError`; they are
printed as one ``error: ...`` line on stderr with exit status 2, never as a
traceback. Subcommand modules must not import numba at module level, so that
``numbacnn shapes`` starts fast.
"""

from __future__ import annotations

import sys

import click

from numbacnn import __version__
from numbacnn.errors import NumbacnnError


class NumbacnnGroup(click.Group):
    """A group that turns NumbacnnError into one line and exit status 2."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except NumbacnnError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=NumbacnnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="numbacnn")
def cli() -> None:
    """numbacnn: convolutional networks from first principles, on CPU and NVIDIA GPU."""


def _register() -> None:
    from numbacnn_cli import bench, data, devices, export, model, plot, shapes, train

    for module in (bench, data, devices, export, model, plot, shapes, train):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="numbacnn")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
