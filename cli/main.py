"""Entry point of the ``numbacnn`` command: a Click group whose subcommands live in
one module each (``shapes``, ``train``, ``data`` ...).

Errors a user can cause are :class:`numbacnn.errors.NumbacnnError`; they are
printed as one ``error: ...`` line on stderr with exit status 2, never as a
traceback; one about a value the command takes as an option is reported as Click's
error for that option (``numbacnn_cli.options.option_error``). Subcommand modules must
not import numba (or h5py) at module level, so that ``numbacnn shapes`` starts fast.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from typing import Any

import click

from numbacnn import __version__
from numbacnn.errors import NumbacnnError


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C (saves in progress are undone), then exit 143."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def _one_line(text: str, limit: int = 300) -> str:
    """Click's message as one printable line: it may quote any argument given."""
    line = " ".join(str(text).split())
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
    return line if len(line) <= limit else line[:limit - 1] + "…"


class NumbacnnGroup(click.Group):
    """A group that turns every error a user can cause into one ``error:`` line.

    NumbacnnError and Click's usage errors exit 2, Ctrl-C 130, SIGTERM 143; an output
    that cannot be written (a full disk behind stdout) is an error line too.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as exc:
            hint = ""
            ctx = getattr(exc, "ctx", None)
            if isinstance(exc, click.UsageError) and ctx is not None:
                hint = f"; see {ctx.command_path} --help"
            _echo_error(_one_line(exc.format_message()).rstrip(".") + hint)
            code = exc.exit_code
        except click.Abort:
            _echo_error("interrupted", prefix="")
            code = 130
        sys.exit(_flushed(code if isinstance(code, int) else 0))

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
        try:
            return super().invoke(ctx)
        except NumbacnnError as exc:
            from numbacnn.errors import printable

            _echo_error(printable(str(exc)) + _advice(exc))
            ctx.exit(2)
        except KeyboardInterrupt as exc:
            _echo_error("interrupted" + _written_in_full(exc), prefix="")
            ctx.exit(130)
        except Terminated as exc:
            _echo_error("terminated by SIGTERM" + (_written_in_full(exc) or "; files being "
                        "written were left as they were (saves are atomic)"))
            ctx.exit(143)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # the reader went away (| head): not our error
                _silence_stdout()
                ctx.exit(0)
            if exc.filename:
                from numbacnn.errors import shown_path

                _echo_error(f"{shown_path(exc.filename)}: {exc.strerror or exc}; check the "
                            "path and its permissions")
            else:
                _echo_error(f"cannot write the output: {exc.strerror or exc}; free disk space "
                            "or send the output elsewhere")
            ctx.exit(2)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)


def _written_in_full(interrupt: BaseException) -> str:
    """" after FILE was written in full" when the interrupt arrived during a save and was
    held back until the file was complete (numbacnn.io.atomic_file); "" otherwise."""
    from numbacnn.errors import shown_path
    from numbacnn.io.atomic_file import written_before

    written = written_before(interrupt)
    if not written:
        return ""
    files = " and ".join(shown_path(path) for path in written)
    return f" after {files} {'was' if len(written) == 1 else 'were'} written in full"


def _advice(exc: NumbacnnError) -> str:
    """The command that fixes a library error, for the errors whose fix is one."""
    from numbacnn.errors import MissingBundledDataError, NotADatasetError, NotAModelError

    if isinstance(exc, NotAModelError):
        return "; numbacnn train writes one"
    if isinstance(exc, NotADatasetError):
        return "; numbacnn data import-idx and import-npz write dataset files"
    if isinstance(exc, MissingBundledDataError):
        return "; run: numbacnn data make-mini fashion-mnist data/fashion-mnist-mini.h5"
    return ""


def _echo_error(message: str, prefix: str = "error: ") -> None:
    try:
        click.echo(f"{prefix}{message}", err=True)
    except OSError:
        pass  # stderr itself is gone: the exit status still tells


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail loudly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _flushed(code: int) -> int:
    """Flush stdout now, while a failure can still become an error line and exit 2."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        _silence_stdout()
        if exc.errno != errno.EPIPE and code == 0:
            _echo_error(f"cannot write the output: {exc.strerror}; free disk space or send "
                        "the output elsewhere")
            return 2
    except (ValueError, AttributeError):
        pass
    return code


DATA_PARALLEL = ("train",)  # the commands whose ranks share the work under mpirun


@click.group(cls=NumbacnnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="numbacnn")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """numbacnn: convolutional networks from first principles, on CPU and NVIDIA GPU."""
    if ctx.invoked_subcommand in DATA_PARALLEL:
        return
    from numbacnn.training.distributed import launched_by_mpi, launcher_rank

    if launched_by_mpi():  # a command that is not data-parallel runs once, on rank 0
        if launcher_rank() > 0:
            ctx.exit(0)
        _echo_error(f"numbacnn {ctx.invoked_subcommand} is not data-parallel: under an MPI "
                    "launcher rank 0 alone runs it", prefix="note: ")


def _register() -> None:
    from numbacnn_cli import (
        bench,
        compare,
        data,
        devices,
        export,
        import_onnx,
        model,
        plot,
        shapes,
        train,
    )
    from numbacnn_cli.options import map_library_errors

    for module in (bench, compare, data, devices, export, import_onnx, model, plot, shapes,
                   train):
        for command in module.COMMANDS:
            cli.add_command(map_library_errors(command))


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="numbacnn")
    except SystemExit as exit:
        if exit.code in (130, 143):  # interrupted: a late Ctrl-C must not print a
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # traceback during shutdown
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
