"""The `imagefactory` command: wires the pipeline stages together, nothing more.

Each subcommand lives in imagefactory/commands/<name>.py and is imported only when used (or
listed by --help); command modules import heavy libraries (docker, rich) inside their
functions, so `imagefactory --help` stays fast.
"""

from __future__ import annotations

import errno
import importlib
import io
import os
import pkgutil
import sys
from pathlib import Path
from typing import NoReturn

import click

from . import __version__, commands
from .errors import EXIT_FAILED, EXIT_USAGE, ImagefactoryError
from .safety import clean


def _command_name(module: str) -> str:
    return module.rstrip("_").replace("_", "-")


class LazyGroup(click.Group):
    """Finds subcommands as modules of imagefactory.commands without importing them all."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(
            _command_name(m.name)
            for m in pkgutil.iter_modules(commands.__path__)
            if not m.name.startswith("_")
        )

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for m in pkgutil.iter_modules(commands.__path__):
            if not m.name.startswith("_") and _command_name(m.name) == cmd_name:
                module = importlib.import_module(f"{commands.__name__}.{m.name}")
                command: click.Command = module.command
                return command
        return None

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            from .matrix.loader import suggest

            raise click.UsageError(f"no such command '{name}'"
                                   f"{suggest(name, self.list_commands(ctx))}", ctx)
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False),
              default=None, envvar="IMAGEFACTORY_CONFIG",
              help="The matrix file. Default: ./variants.yaml, else the one shipped with "
                   "imagefactory.")
@click.option("--debug", is_flag=True, envvar="IMAGEFACTORY_DEBUG",
              help="Show debug logs (engine calls among them) and full tracebacks. Also: "
                   "IMAGEFACTORY_DEBUG=1.")
@click.version_option(__version__, prog_name="imagefactory")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, debug: bool) -> None:
    """Render, build, test and publish PyTorch images for AMD RDNA1 GPUs (gfx1010/gfx1012).

    Exit codes: 0 ok, 1 the job failed, 2 usage or configuration error.
    """
    from . import log
    from .appstate import AppState

    log.setup(debug)
    ctx.obj = AppState(config)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="imagefactory", standalone_mode=False)
    except ImagefactoryError as exc:
        # Messages carry text from files, arguments and engines: credentials redacted,
        # terminal control characters escaped, one line (safety.clean).
        click.echo(f"imagefactory: error: {clean(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        shown = io.StringIO()
        exc.show(file=shown)  # click quotes argument values back: clean them too
        click.echo("\n".join(clean(line) for line in shown.getvalue().split("\n")),
                   err=True, nl=False)
        sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
    except click.Abort as exc:
        # click turns Ctrl-C into Abort; keep the conventional 130 for it.
        interrupted = isinstance(exc.__context__, KeyboardInterrupt)
        click.echo("imagefactory: interrupted" if interrupted else "imagefactory: aborted",
                   err=True)
        sys.exit(130 if interrupted else EXIT_FAILED)
    except KeyboardInterrupt:
        click.echo("imagefactory: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:
        if exc.filename is None:
            _crash(exc, argv)
        # A path the file system refuses (too long, a loop of links, not a folder, no access)
        # is the caller's to fix, not a bug: the path and why, one line. Too long is a bad
        # argument (usage); the others are a job that could not be done.
        name = os.fsdecode(exc.filename)
        click.echo(f"imagefactory: error: {clean(name)[:300]}: {exc.strerror or exc}",
                   err=True)
        sys.exit(EXIT_USAGE if exc.errno == errno.ENAMETOOLONG else EXIT_FAILED)
    except Exception as exc:  # a bug: one line and where the traceback is, never a bare one
        _crash(exc, argv)
    sys.exit(0)


def _crash(exc: BaseException, argv: list[str] | None) -> NoReturn:
    from . import log

    try:
        names: list[str] = cli.list_commands(click.Context(cli))
    except Exception:  # the report must be written whatever else is broken
        names = []
    path = log.write_crash_report(exc, argv, names)
    if log.debug_requested(argv):
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)
    where = f"; full traceback in {path}" if path else ""
    click.echo(f"imagefactory: internal error: {clean(log.one_line(exc))}{where} (please "
               "report it)", err=True)
    sys.exit(EXIT_FAILED)
