"""The nsa-bench command line: thin commands over library functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

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


@app.command()
def train(
    data: str = typer.Option(..., "--data", help="Text file or folder of .txt/.md files to train on."),
    attn: str = typer.Option("both", "--attn", help="nsa, full, or both (a pair: same seed, data order and budget)."),
    preset: str = typer.Option("tiny", "--preset", help="Model preset: tiny (CPU, seconds), small, gpu (~25M params, 8k context)."),
    ctx: int = typer.Option(None, "--ctx", help="Context length in tokens (default: the preset's; tiny 256, small 2048, gpu 8192)."),
    batch: int = typer.Option(None, "--batch", help="Sequences per step (default: the preset's)."),
    max_steps: int = typer.Option(None, "--max-steps", help="Step budget per model."),
    time_budget: float = typer.Option(None, "--time-budget", help="Seconds of training per model (eval, checkpoints not counted)."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate (default: the preset's)."),
    synthetic_frac: float = typer.Option(0.25, "--synthetic-frac", help="Share of each batch that is passkey / key-value retrieval."),
    eval_every: int = typer.Option(None, "--eval-every", help="Steps between held-out evaluations (default: the preset's)."),
    save_every: int = typer.Option(200, "--save-every", help="Steps between checkpoints (and one at the end)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the weights and of the data order."),
    nsa: str = typer.Option(None, "--nsa", help="NSA block sizes l/d/l_sel/n/w (default: the preset's; gpu 32/16/64/16/512)."),
    nsa_impl: str = typer.Option("auto", "--nsa-impl", help="auto (Triton on CUDA, checked first; reference on CPU), triton, reference."),
    device: str = typer.Option(None, "--device", help="cuda or cpu (default: cuda when present)."),
    out: str = typer.Option("runs/train", "--out", help="Folder for checkpoints (OUT/nsa, OUT/full), the CSV and the plot."),
    csv: str = typer.Option(None, "--csv", help="Train CSV (default: OUT/train.csv)."),
    plot: str = typer.Option(None, "--plot", help="Loss plot PNG (default: OUT/train_loss.png)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoints in OUT up to the budget."),
) -> None:
    """Train an NSA / full-attention pair (or one model) on local text plus synthetic retrieval; CSV, plot, checkpoints."""
    from nsa_bench.train import TrainConfig
    from nsa_bench.train import train as run_training

    config = TrainConfig(
        data=data, out=out, preset=preset, attention=attn, ctx=ctx, batch=batch, max_steps=max_steps,
        time_budget=time_budget, lr=lr, synthetic_frac=synthetic_frac, eval_every=eval_every,
        save_every=save_every, seed=seed, device=device, nsa=nsa, nsa_impl=nsa_impl, csv=csv, plot=plot, resume=resume,
    )
    try:
        config = config.resolved()
        finals = run_training(config)
    except (ValueError, RuntimeError) as error:
        raise UsageError(str(error)) from None
    for attention, row in finals.items():
        typer.echo(
            f"{attention:4s} steps {row.get('step')}  loss {row.get('loss', float('nan')):.4f}  "
            f"held-out {row.get('val_loss', float('nan')):.4f}  retrieval acc {row.get('val_answer_acc', float('nan')):.2f}  "
            f"{row.get('tokens_per_s', float('nan')):,.0f} tok/s  {row.get('status', 'ok')}"
        )
    typer.echo(f"csv {config.csv}\nplot {config.plot}\ncheckpoints {out}/<attention>")


longbench_app = typer.Typer(
    help="LongBench (v1, LongBench-E) on local JSONL files: generate with a model, or score predictions.",
    no_args_is_help=True,
)
app.add_typer(longbench_app, name="longbench")


@longbench_app.command("run")
def longbench_run(
    data: Path = typer.Option(..., "--data", help="Folder of LongBench files <subset>.jsonl (official format)."),
    model: List[str] = typer.Option(
        ..., "--model", help="Model path or preset; or one per attention, repeated: nsa=PATH, full=PATH."
    ),
    attn: str = typer.Option("both", "--attn", help="nsa, full or both."),
    datasets: Optional[List[str]] = typer.Option(
        None, "--datasets", help="Subsets, comma-separated or repeated (default: all files in --data)."
    ),
    max_examples: Optional[int] = typer.Option(None, "--max-examples", help="First N examples of each subset."),
    out: Path = typer.Option(Path("results/longbench.csv"), "--out", help="Result CSV (rows appended, resumable)."),
    preds: Path = typer.Option(
        Path("results/longbench_preds"), "--preds", help="Folder for prediction JSONL files (resumable)."
    ),
    device: Optional[str] = typer.Option(None, "--device", help="cuda or cpu (default: cuda when available)."),
    nsa_config: Optional[str] = typer.Option(None, "--nsa-config", help="NSA config l/d/l_sel/n/w."),
) -> None:
    """Generate LongBench predictions (official prompts, middle truncation, greedy) and score them."""
    from nsa_bench.suites.longbench.commands import run_command

    run_command(data, model, attn, datasets, max_examples, out, preds, device, nsa_config)


@longbench_app.command("score")
def longbench_score(
    predictions: Path = typer.Option(..., "--predictions", help="A <subset>.jsonl prediction file or a folder of them."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also append the rows to this CSV."),
    model: Optional[str] = typer.Option(None, "--model", help="Model label for the rows (default: the path)."),
    attn: Optional[str] = typer.Option(None, "--attn", help="Attention label for the rows."),
) -> None:
    """Score existing predictions (lines with pred, answers, all_classes, length) as LongBench's eval.py."""
    from nsa_bench.suites.longbench.commands import score_command

    score_command(predictions, out, model, attn)


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
