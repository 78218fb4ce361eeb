"""The nsa-bench command line: thin commands over library functions."""

from __future__ import annotations

import sys

import typer

from nsa_bench import __version__
from nsa_bench.errors import UsageError

# The click that this typer uses (typer >= 0.20 vendors its own copy).
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

app = typer.Typer(
    name="nsa-bench",
    help="What Native Sparse Attention buys over full attention: kernel speed and model quality.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nsa-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """nsa-bench: benchmarks and evaluations of Native Sparse Attention."""


@app.command()
def env() -> None:
    """Print the device, library versions and which attention baselines the benchmarks will use."""
    from nsa_bench.environment import environment_info

    for key, value in environment_info().items():
        typer.echo(f"{key:16s} {value}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage errors become one line on stderr and exit code 2."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="nsa-bench", standalone_mode=False)
    except typer.Exit as stop:
        return stop.exit_code
    except _ClickException as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `nsa-bench`: help was printed
            return 0
        typer.echo(f"nsa-bench: error: {error.format_message()}", err=True)
        return error.exit_code
    except typer.Abort:
        typer.echo("nsa-bench: aborted", err=True)
        return 130
    except UsageError as error:
        typer.echo(f"nsa-bench: error: {error}", err=True)
        return 2
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
