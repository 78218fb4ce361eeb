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
    data: str = typer.Option(None, "--data", help="Text file or folder of .txt/.md files to train on (default: the Python standard library's sources plus generated prose, found on every machine)."),
    attn: str = typer.Option("both", "--attn", help="nsa, full, or both (a pair: same seed, data order and budget)."),
    preset: str = typer.Option("tiny", "--preset", help="Model preset: tiny (CPU, seconds), small, gpu (23M full / 30M NSA params, 8k context), needle (the retrieval recipe: 4 layers, 4 heads of 64, 4k context, subword tokenizer), needle-tiny (its CPU-sized cousin)."),
    ctx: int = typer.Option(None, "--ctx", help="Context length in tokens (default: the preset's; tiny 256, small 2048, gpu 8192)."),
    batch: int = typer.Option(None, "--batch", help="Sequences per step (default: the preset's)."),
    max_steps: int = typer.Option(None, "--max-steps", help="Step budget per model."),
    time_budget: float = typer.Option(None, "--time-budget", help="Seconds of training per model (eval, checkpoints not counted)."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate (default: the preset's)."),
    retrieval_frac: float = typer.Option(0.75, "--retrieval-frac", help="Share of each batch that is dense needle-family retrieval rows (the rest: plain text)."),
    tasks: str = typer.Option(None, "--tasks", help="Needle-family tasks of the retrieval rows, comma-separated (default: all five)."),
    answer_weight: float = typer.Option(1.0, "--answer-weight", help="Weight of the answer tokens' mean loss, added to the mean loss of all tokens."),
    curriculum: float = typer.Option(None, "--curriculum", help="Share of the budget spent at ctx/8, ctx/4, ctx/2 before ctx (default: the preset's; needle 0.3, others 0)."),
    tokenizer: str = typer.Option(None, "--tokenizer", help="byte, bpe (train one on the data, saved with the checkpoints) or a tokenizer folder (default: the preset's)."),
    workers: int = typer.Option(0, "--workers", help="Processes that build batches ahead (0: in the training process)."),
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
    force: bool = typer.Option(False, "--force", help="Start over in an OUT that holds a run (its files are replaced)."),
    fsdp: bool = typer.Option(False, "--fsdp", help="Under torchrun: shard the model with FSDP2 (fully_shard) instead of DistributedDataParallel."),
) -> None:
    """Train an NSA / full-attention pair (or one model) on text plus dense needle-family retrieval; CSV, plot, checkpoints.

    Under `torchrun --nproc_per_node N -m nsa_bench.cli train ...` the --batch is the global batch, split over the N processes."""
    from nsa_bench import distributed
    from nsa_bench.train import TrainConfig
    from nsa_bench.train import train as run_training

    config = TrainConfig(
        data=data, out=out, preset=preset, attention=attn, ctx=ctx, batch=batch, max_steps=max_steps,
        time_budget=time_budget, lr=lr, retrieval_frac=retrieval_frac, answer_weight=answer_weight,
        tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()) if tasks else None,
        curriculum=curriculum, tokenizer=tokenizer, workers=workers, eval_every=eval_every,
        save_every=save_every, seed=seed, device=device, nsa=nsa, nsa_impl=nsa_impl, csv=csv, plot=plot, resume=resume,
        force=force, fsdp=fsdp,
    )
    try:
        config = config.resolved()
        finals = run_training(config)
    except (ValueError, RuntimeError) as error:
        raise UsageError(str(error)) from None
    finally:
        distributed.close()
    if not distributed.launched_ranks().main:
        return
    for attention, row in finals.items():
        typer.echo(
            f"{attention:4s} steps {row.get('step')}  loss {row.get('loss', float('nan')):.4f}  "
            f"held-out {row.get('val_loss', float('nan')):.4f}  retrieval acc {row.get('val_answer_acc', float('nan')):.2f}  "
            f"{row.get('tokens_per_s', float('nan')):,.0f} tok/s  {row.get('status', 'ok')}"
        )
    typer.echo(f"csv {config.csv}\nplot {config.plot}\ncheckpoints {out}/<attention>")


@app.command("train-speed")
def train_speed(
    preset: str = typer.Option("gpu", "--preset", help="Model preset timed with each attention (sizes equal, only the attention differs)."),
    ctx: str = typer.Option("8k,16k,32k,64k", "--ctx", help="Context lengths, comma-separated (8k = 8192)."),
    tokens_per_step: int = typer.Option(65536, "--tokens-per-step", help="Tokens per step; batch = this // length (at least 1)."),
    steps: int = typer.Option(5, "--steps", help="Timed steps per case (the median is reported)."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed steps first (kernel compilation)."),
    device: str = typer.Option(None, "--device", help="cuda or cpu (default: cuda when present)."),
    out: str = typer.Option("runs/train_speed.csv", "--out", help="Result CSV (rows written as produced)."),
    plot: str = typer.Option(None, "--plot", help="PNG of tokens/s and NSA's speedup (default: the CSV's path with .png)."),
) -> None:
    """Training throughput: tokens/s of NSA against full attention for the same model at each length."""
    from nsa_bench.flops import parse_size
    from nsa_bench.train_speed import measure_train_speed, plot_train_speed

    try:
        lengths = [parse_size(p) for p in ctx.split(",") if p.strip()]
        rows = measure_train_speed(preset, lengths, tokens_per_step, out, device, steps, warmup)
    except ValueError as error:
        raise UsageError(str(error)) from None
    for row in rows:
        speed = f"{row['tokens_per_s']:,.0f} tok/s" if row.get("status") == "ok" else row.get("status")
        extra = f"  {row['speedup_full']:.2f}x full" if row.get("speedup_full") else ""
        typer.echo(f"{row['attention']:4s} {row['ctx_len']:>7d}  batch {row['batch']:<3d} {speed}{extra}")
    typer.echo(f"csv {out}\nplot {plot_train_speed(rows, plot or str(Path(out).with_suffix('.png')))}")


longbench_app = typer.Typer(
    help="LongBench (v1, LongBench-E) on local JSONL files: generate with a model, or score predictions.",
    no_args_is_help=True,
)
app.add_typer(longbench_app, name="longbench")


CODE_SIM_HELP = ("lcc/repobench-p similarity as fuzz.ratio computes it: levenshtein (with python-Levenshtein; "
                 "default) or difflib (fuzzywuzzy alone, as LongBench's requirements install it).")


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
    code_sim: str = typer.Option("levenshtein", "--code-sim", help=CODE_SIM_HELP),
) -> None:
    """Generate LongBench predictions (official prompts, middle truncation, greedy) and score them."""
    from nsa_bench.suites.longbench.commands import run_command

    run_command(data, model, attn, datasets, max_examples, out, preds, device, nsa_config, code_sim)


@longbench_app.command("score")
def longbench_score(
    predictions: Path = typer.Option(..., "--predictions", help="A <subset>.jsonl prediction file or a folder of them."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also append the rows to this CSV."),
    model: Optional[str] = typer.Option(None, "--model", help="Model label for the rows (default: the path)."),
    attn: Optional[str] = typer.Option(None, "--attn", help="Attention label for the rows."),
    code_sim: str = typer.Option("levenshtein", "--code-sim", help=CODE_SIM_HELP),
) -> None:
    """Score existing predictions (lines with pred, answers, all_classes, length) as LongBench's eval.py."""
    from nsa_bench.suites.longbench.commands import score_command

    score_command(predictions, out, model, attn, code_sim)


def _kernels(
    out: str = typer.Option("results", "--out", help="Folder of the CSV, kernels_<tag>.csv."),
    reports: str = typer.Option("reports", "--reports", help="Folder of kernels_<tag>.md and its PNGs."),
    tag: str = typer.Option(
        None, "--tag",
        help="Name of the run's files (default: the GPU, e.g. h200; with date and time added if that file exists).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing kernels_<tag>.csv and its report."),
    interpret: bool = typer.Option(False, "--interpret", help="CPU smoke run of the whole pipeline under the Triton interpreter, tiny sizes."),
    **options,
) -> None:
    """Kernel speed: NSA against FlashAttention-2 and cuDNN attention, fwd, bwd, decode; CSV, plots, markdown."""
    import os

    if interpret:  # before anything imports triton
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    try:
        from nsa_bench.suites.kernel_bench import DeviceLost, run_kernel_bench
        from nsa_bench.suites.kernel_spec import spec_from_options
    except ImportError as error:  # e.g. a kernels package that does not import here
        raise UsageError(f"nsa-bench kernels cannot import its code: {error}") from None

    spec, command = spec_from_options(interpret=interpret, out=out, reports=reports, tag=tag, **options)
    if not interpret and not torch.cuda.is_available():  # after the options, so a bad one is named first
        raise UsageError("nsa-bench kernels needs a CUDA GPU; use --interpret for a CPU smoke run")
    try:
        run_kernel_bench(spec, out, reports, tag, command=command, force=force)
    except DeviceLost as lost:  # a sticky CUDA error: one line, exit 1
        typer.echo(f"nsa-bench kernels: {lost}", err=True)
        raise typer.Exit(1) from None


def _with_spec_options(command):
    """The command with kernel_options.OPTIONS as its spec options (declared there once), before its own."""
    import inspect
    import typing

    from nsa_bench.suites.kernel_options import OPTIONS

    hints = typing.get_type_hints(command)
    own = [p.replace(kind=p.KEYWORD_ONLY, annotation=hints[p.name])
           for p in inspect.signature(command).parameters.values() if p.kind is not p.VAR_KEYWORD]
    spec = [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, annotation=o.kind,
                              default=typer.Option(o.default, o.flag, help=o.help)) for o in OPTIONS]
    command.__signature__ = inspect.Signature(spec + own, return_annotation=None)
    return command


kernels = app.command("kernels")(_with_spec_options(_kernels))


NO_PAIR = ("no --model given, and no trained pair ships with nsa-bench (the recipe's NSA model is 15 MB in bf16). "
           "Train one in one command (a GPU, about 10 minutes): nsa-bench train --preset needle --attn both "
           "--time-budget 240 --workers 12 --out runs/needle-pair; then nsa-bench needle --task family "
           "--model nsa=runs/needle-pair/nsa --model full=runs/needle-pair/full --ctx 4k,64k --extrapolate "
           "(or --model tiny: random weights, a smoke run)")


@app.command()
def needle(
    model: Optional[List[str]] = typer.Option(
        None, "--model", help="Model path or preset; or one per attention, repeated: nsa=PATH, full=PATH."
    ),
    attn: str = typer.Option("both", "--attn", help="nsa, full or both."),
    task: str = typer.Option("passkey", "--task", help="passkey, a needle-family task (niah_single, niah_multikey, niah_multivalue, niah_multiquery, vt), a comma list, or 'family' for all five."),
    ctx: str = typer.Option("8k", "--ctx", help="Longest context (a ladder of up to 5 lengths) or a list: 8k,16k,32k."),
    depths: str = typer.Option("11", "--depths", help="Number of depths from 0 to 100%, or a list: 0,0.25,0.5 or 0%,50%."),
    trials: int = typer.Option(3, "--trials", help="Trials per cell (trial t uses seed + t)."),
    seed: int = typer.Option(0, "--seed", help="Base seed of the pass keys and the generated haystack."),
    haystack: Optional[Path] = typer.Option(
        None, "--haystack", help="Folder of .txt files for the haystack (default: built-in generated sentences)."
    ),
    needle_text: Optional[str] = typer.Option(None, "--needle", help="Needle text with a {value} placeholder."),
    question: Optional[str] = typer.Option(None, "--question", help="Question at the end of the prompt."),
    digits: int = typer.Option(5, "--digits", help="Digits of the random value."),
    extrapolate: bool = typer.Option(
        False, "--extrapolate", help="Also run lengths beyond the model's max_length (else: unsupported rows)."
    ),
    out: Path = typer.Option(Path("results/needle.csv"), "--out", help="Result CSV (rows appended, resumable)."),
    report_dir: Path = typer.Option(Path("reports"), "--report-dir", help="Where the heatmap PNGs go."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda or cpu (default: cuda when available)."),
    nsa_config: Optional[str] = typer.Option(None, "--nsa-config", help="NSA config l/d/l_sel/n/w."),
) -> None:
    """Needle in a haystack: exact match over context lengths x needle depths, heatmaps per attention."""
    from nsa_bench import distributed
    from nsa_bench.suites.needle import DEFAULT_NEEDLE, DEFAULT_QUESTION, NeedleGrid, parse_ctx, parse_depths, parse_tasks, run_needle
    from nsa_bench.suites.needle_summary import run_summary, summary_lines
    from nsa_bench.suites.suite_models import attentions, check_models, load_model, models_by_attention

    grids = [NeedleGrid(
        ctx_lens=parse_ctx(ctx),
        depths=parse_depths(depths),
        trials=trials,
        seed=seed,
        needle=needle_text or DEFAULT_NEEDLE,
        question=question or DEFAULT_QUESTION,
        haystack_dir=None if haystack is None else str(haystack),
        digits=digits,
        extrapolate=extrapolate,
        family=family,
    ) for family in parse_tasks(task)]
    if not model:
        raise UsageError(NO_PAIR)
    models = models_by_attention(model, attentions(attn))
    check_models(models, nsa_config)
    distributed.init(distributed.rank_device(device))  # under torchrun: the ranks share the cells out
    try:
        for grid in grids:
            for path in run_needle(models, lambda m, a: load_model(m, a, device, nsa_config), grid, out, report_dir):
                typer.echo(f"wrote {path}")
    finally:
        distributed.close()
    if not distributed.launched_ranks().main:
        return
    typer.echo(f"rows in {out}")
    summaries = [run_summary(out, models, grid) for grid in grids]
    for grid, summary in zip(grids, summaries):
        typer.echo("\n" + "\n".join(summary_lines(summary, grid.task)))
    if all(summary.nothing_ran for summary in summaries):
        raise UsageError("every cell was unsupported (the reasons are above): nothing ran")
    if any(summary.unsupported for summary in summaries):
        typer.echo("warning: some cells were unsupported (see above); they are rows with that status in the CSV",
                   err=True)


@app.command()
def lmeval(
    model: List[str] = typer.Option(
        ..., "--model", help="Model path or preset; or one per attention, repeated: nsa=PATH, full=PATH."
    ),
    attn: str = typer.Option("both", "--attn", help="nsa, full or both."),
    tasks: str = typer.Option("gsm8k,mmlu", "--tasks", help="gsm8k, mmlu (all subjects in --mmlu-dir), mmlu_<subject>."),
    gsm8k_dir: Optional[Path] = typer.Option(
        None, "--gsm8k-dir", envvar="NSA_BENCH_GSM8K_DIR", help="Folder with GSM8K train.jsonl and test.jsonl."
    ),
    mmlu_dir: Optional[Path] = typer.Option(
        None, "--mmlu-dir", envvar="NSA_BENCH_MMLU_DIR", help="Folder of Hendrycks MMLU CSVs (dev/, test/)."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", help="First N questions of each task (MMLU: of each subject)."),
    num_fewshot: Optional[int] = typer.Option(None, "--num-fewshot", help="Override the tasks' few-shot count (5)."),
    batch_size: str = typer.Option("8", "--batch-size", help="Rows per forward pass for log-likelihoods, or auto."),
    max_gen_toks: Optional[int] = typer.Option(None, "--max-gen-toks", help="Longest generation (default 256)."),
    out: Path = typer.Option(Path("results/lmeval.csv"), "--out", help="Result CSV (rows appended, resumable)."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda or cpu (default: cuda when available)."),
    nsa_config: Optional[str] = typer.Option(None, "--nsa-config", help="NSA config l/d/l_sel/n/w."),
) -> None:
    """lm-eval on local data: GSM8K (strict and flexible match) and MMLU (5-shot), stock prompts.

    One process; over several GPUs: `accelerate launch -m nsa_bench.suites.lmeval_model --model nsa-bench ...` (data parallel), `--model_args ...,parallelize=True` (a Hugging Face model over the GPUs); README, "Several processes"."""
    from nsa_bench.suites.lmeval_suite import require_lm_eval, resolve_tasks, run_lmeval
    from nsa_bench.suites.suite_models import attentions, check_models, load_model, models_by_attention

    require_lm_eval()
    if not (batch_size == "auto" or batch_size.isdigit() and int(batch_size) > 0):
        raise UsageError(f"--batch-size must be a positive number or auto, got {batch_size!r}")
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    gsm8k, mmlu = (None if d is None else str(d) for d in (gsm8k_dir, mmlu_dir))
    pairs = resolve_tasks(names, gsm8k, mmlu)
    models = models_by_attention(model, attentions(attn))
    check_models(models, nsa_config)
    rows = run_lmeval(models, lambda m, a: load_model(m, a, device, nsa_config), pairs, out, gsm8k, mmlu,
                      limit=limit, num_fewshot=num_fewshot, batch_size=batch_size, max_gen_toks=max_gen_toks)
    for row in rows:
        if row["task"] in ("gsm8k", "mmlu") or row["status"] != "ok":
            typer.echo(f"{row['attention']:5s} {row['task']:10s} {row['metric']:30s} {row['score']:.4f} "
                       f"(n={row['n']}) {row['status']}")
    typer.echo(f"rows in {out}")


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A checkpoint directory written by `nsa-bench train` (e.g. runs/x/full)."),
    out: Path = typer.Option(..., "--out", help="New (or empty) directory for the Hugging Face model."),
) -> None:
    """A checkpoint as a Hugging Face model directory: full attention as a Llama, NSA as model type nsa_bench."""
    from nsa_bench.models.hf_export import export_checkpoint

    try:
        import transformers  # noqa: F401
    except ImportError:
        raise UsageError("export needs transformers: pip install 'nsa-bench[eval]'") from None
    try:
        path = export_checkpoint(run_dir, out)
    except ValueError as error:
        raise UsageError(str(error)) from None
    typer.echo(f"wrote {path}")


@app.command()
def check(
    baseline: Path = typer.Option(..., "--baseline", help="Result CSV of the reference run (e.g. committed under results/)."),
    current: Path = typer.Option(..., "--current", help="Result CSV of the run to judge."),
    max_speedup_drop: Optional[str] = typer.Option(
        None, "--max-speedup-drop", help="Largest relative drop of speedup_fa2/speedup_cudnn, e.g. 10% or 0.1 (default 10%)."),
    max_accuracy_drop: Optional[float] = typer.Option(
        None, "--max-accuracy-drop", help="Largest score drop in points (0.01 for scores in [0, 1]; default 1.0)."),
    thresholds: Optional[Path] = typer.Option(
        None, "--thresholds", help="TOML file: max_speedup_drop, max_accuracy_drop, a metrics table of per-metric overrides."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Rows only in the baseline do not fail the check."),
    significant: bool = typer.Option(
        False, "--significant", help="A score drop beyond the threshold fails only if significant: paired test on the "
        "rows' example scores (exact McNemar for right/wrong, sign-flip otherwise; p < --alpha), else non-overlapping "
        "95% intervals; rows with neither: threshold alone."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of --significant."),
    ignore_spread: bool = typer.Option(
        False, "--ignore-spread", help="Judge speedup medians alone, without the runs' p20-p80 bands."),
    show_all: bool = typer.Option(False, "--show-all", help="Also list unchanged and uncompared rows."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write a machine-readable summary here."),
) -> None:
    """Regression gate: compare speedups and scores of CUR against BASE; exit 1 on a regression, 2 on bad input."""
    from nsa_bench.gate import compare
    from nsa_bench.gate_output import print_result, write_json
    from nsa_bench.gate_thresholds import Thresholds, load_thresholds, parse_alpha, parse_points, parse_relative

    limits = load_thresholds(thresholds) if thresholds is not None else Thresholds()
    if max_speedup_drop is not None:
        limits.speedup_drop = parse_relative(max_speedup_drop)
    if max_accuracy_drop is not None:
        limits.accuracy_drop = parse_points(max_accuracy_drop)
    if significant:
        limits.alpha = parse_alpha(alpha)
    result = compare(baseline, current, limits, allow_missing=allow_missing, use_spread=not ignore_spread)
    print_result(result, show_all=show_all)
    if json_out is not None:
        typer.echo(f"summary {write_json(result, json_out)}")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command()
def report(
    csvs: List[Path] = typer.Argument(..., help="Result CSVs (kernels, needle, longbench, lmeval, train), e.g. results/*.csv."),
    out: Path = typer.Option(
        Path("runs/report/report.md"), "--out",
        help="Markdown file; its PNGs go beside it. The default is outside the committed reports/.",
    ),
    title: str = typer.Option("nsa-bench report", "--title", help="Heading of the report."),
) -> None:
    """One markdown report with plots from result CSVs: kernels, needle, LongBench, lm-eval, training, run metadata.
    Runs on the CPU get sections of their own, apart from GPU runs."""
    from nsa_bench.report import build_report

    path = build_report(csvs, out, title=title)
    typer.echo(f"report {path}")


_METAVARS = {"integer": "N", "int": "N", "float": "NUMBER", "path": "PATH"}  # else TEXT


def plain_help(command) -> None:
    """Help in plain words: `--out PATH`, `--trials N`, `CSV...`, flags bare (typer >= 0.20 shows type
    placeholders such as `<list[str]>`, `<bool>` and `{csvs}...`)."""
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)
    for param in command.params:
        if param.param_type_name == "argument":
            shown = param.name.rstrip("s").upper() + ("..." if param.nargs != 1 else "")
            param.metavar = shown
            param.get_usage_pieces = lambda ctx, shown=shown: [shown]
            param.display_type_rich = lambda ctx: None
        elif param.metavar is None:
            kind = param.type.name if hasattr(param, "type") else param.bare_type().removeprefix("list[").rstrip("]")
            param.metavar = "" if getattr(param, "is_flag", False) else _METAVARS.get(kind.lower(), "TEXT")
    get_help_option = command.get_help_option

    def bare_help_option(ctx):
        option = get_help_option(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    command.get_help_option = bare_help_option


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage errors become one line on stderr and exit code 2."""
    command = typer.main.get_command(app)
    plain_help(command)
    try:
        # Without standalone mode click returns a typer.Exit's code instead of raising it.
        code = command.main(args=argv, prog_name="nsa-bench", standalone_mode=False)
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
    return code if isinstance(code, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
