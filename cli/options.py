"""What the subcommands share: option types built from the library's own names and
bounds, and the mapping of library errors to the options they concern.

Choices and ranges are declared once, in the library (``numbacnn.device.DEVICES``,
``numbacnn.training.settings.BOUNDS`` ...); Click checks them at the edge. A library error
names the value at fault in the library's terms and carries its name (``field``);
:func:`option_error` turns it into Click's error for the command's parameter of that
name ("Invalid value for '--lr': lr must be > 0 and finite, got nan"), exit status 2.
Imports no kernel and no h5py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from numbacnn.device import DEVICES
from numbacnn.errors import NumbacnnError, shown_path
from numbacnn.io.datasets import SPLITS
from numbacnn.io.image_files import DEFAULT_FIT, FITS
from numbacnn.limits import Bounds


def int_range(bounds: Bounds) -> click.IntRange:
    """Click's integer type for the values within ``bounds``."""
    low, high = (None if end is None else int(end) for end in (bounds.low, bounds.high))
    return click.IntRange(low, high, min_open=bounds.low_open, max_open=bounds.high_open)


def float_range(bounds: Bounds) -> click.FloatRange:
    """Click's number type for the values within ``bounds`` (NaN is left to the library's
    check: Click lets it through)."""
    return click.FloatRange(bounds.low, bounds.high, min_open=bounds.low_open,
                            max_open=bounds.high_open)


def device_option(default: str = "auto") -> Callable[[Any], Any]:
    """``--device`` over numbacnn.device.DEVICES; its default from the environment variable
    NUMBACNN_DEVICE when set (the library reads no environment: the value is passed down)."""
    return click.option("--device", type=click.Choice(DEVICES), default=default,
                        envvar="NUMBACNN_DEVICE", show_envvar=True, show_default=True,
                        help="Where the kernels run.")


def split_option(name: str, help: str) -> Callable[[Any], Any]:
    """An option ``name`` choosing a dataset split (numbacnn.io.datasets.SPLITS), default test."""
    return click.option(name, type=click.Choice(SPLITS), default="test", show_default=True,
                        help=help)


def fit_option(what: str) -> Callable[[Any], Any]:
    """``--fit``: how a picture of another aspect ratio is fitted (numbacnn.io.image_files)."""
    return click.option("--fit", type=click.Choice(FITS), default=DEFAULT_FIT,
                        show_default=True, help=f"How {what} of another size or aspect ratio "
                        "is fitted: scaled to cover and centre-cropped (crop), or scaled to fit "
                        "and padded with black (pad).")


batch_option = click.option("--batch-size", type=click.IntRange(min=1), default=256,
                            show_default=True, help="Images per forward pass.")


# Where a value must come from for its error to be reported as the option's: a value
# the user gave, not a default (a default the error names is the library's choice)
_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT)


def option_error(exc: NumbacnnError, ctx: click.Context) -> Exception:
    """Click's error for the parameter of ``ctx``'s command that ``exc.field`` names,
    when the user gave it; ``exc`` itself otherwise (it is printed as it is)."""
    param = next((p for p in ctx.command.params if p.name == exc.field), None)
    if exc.field is None or param is None:
        return exc
    if ctx.get_parameter_source(exc.field) not in _GIVEN:  # the option that would set it
        return (with_command(exc, f"give it with {param.opts[0]}")
                if isinstance(param, click.Option) and param.opts[0] not in str(exc) else exc)
    return click.BadParameter(str(exc), ctx=ctx, param=param)


def error_text(exc: NumbacnnError, ctx: click.Context) -> str:
    """The one line (without "error: ") that the CLI prints for ``exc``."""
    mapped = option_error(exc, ctx)
    return mapped.format_message() if isinstance(mapped, click.ClickException) else str(mapped)


def map_library_errors(command: click.Command) -> click.Command:
    """Make ``command`` (and a group's subcommands) raise :func:`option_error` for the
    library errors of its callback."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            map_library_errors(sub)
    callback = command.callback
    if callback is None or getattr(callback, "_maps_library_errors", False):
        return command

    @functools.wraps(callback)
    def mapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except NumbacnnError as exc:
            error = option_error(exc, click.get_current_context())
            if error is exc:
                raise
            raise error from None

    mapped._maps_library_errors = True  # type: ignore[attr-defined]
    command.callback = mapped
    return command


def with_command(exc: NumbacnnError, advice: str) -> NumbacnnError:
    """``exc`` again (its class and ``field``), its message followed by ``advice``: the
    command a user runs to fix it. Library messages say how in the library's terms; the
    CLI adds its commands."""
    return type(exc)(f"{exc}; {advice}", field=exc.field)


def force_option(what: str) -> Callable[[Any], Any]:
    """``--force``: let the command replace an existing ``what`` that the writing policy
    (numbacnn.io.output_policy) protects; never one of the command's own inputs."""
    return click.option("--force", is_flag=True, help=f"Replace an existing {what} that is "
                        "protected (a model or a dataset); never the command's own input.")


def echo_replaced(target: Any) -> None:
    """Say ``replaced FILE`` (on stderr) when a write replaced an existing file
    (``target``: a numbacnn.io.output_policy.OutputTarget)."""
    if target.replaces:
        click.echo(f"replaced {shown_path(target.given)}", err=True)
