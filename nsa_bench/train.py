"""Train one model, or an NSA / full-attention pair with the same seed, data order and budget.

The recipe that makes a small model retrieve (see README, "Training"): a corpus too large to memorise
(the default corpus, nsa_bench.corpus), a subword tokenizer trained on it and saved with the
checkpoints, dense retrieval rows from the needle family with the answers' loss weighted up
(answer_weight), and a curriculum that starts at ctx/8 and doubles to ctx over the first
`curriculum` share of the budget (the batch keeps its tokens).

Each step's loss, answer loss (on the synthetic retrieval answers) and throughput go to a CSV as
they are produced; held-out loss and retrieval accuracy every eval_every steps; a checkpoint (a
directory load_lm reads, plus the optimizer state) every save_every steps and at the end. The
budget is steps and/or seconds of training time (eval and checkpointing not counted; one untimed
warm-up step on CUDA compiles the kernels first, so both attentions start on equal terms).

Under torchrun each step's batch is the same global batch split over the ranks (DistributedDataParallel,
or FSDP2 with fsdp), so seed, data order and budget mean the same at any world size; the slowest rank's
step time is every rank's, so all stop together; rank 0 writes the CSV, plot and checkpoints.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.nn import functional as F

from nsa_bench import distributed
from nsa_bench.distributed import Ranks
from nsa_bench.models import Transformer, load_checkpoint, preset, save_checkpoint
from nsa_bench.models.model import bf16_autocast
from nsa_bench.models.nsa_backend import nsa_function
from nsa_bench.models.tokenizer import load_tokenizer, train_bpe
from nsa_bench.results import ResultWriter, status_of
from nsa_bench.corpus import default_corpus, describe_default_corpus
from nsa_bench.prefetch import Prefetcher
from nsa_bench.train_data import TrainData, load_corpus, tokenizer_text
from nsa_bench.train_parallel import engine, full_states, load_optimizer, plain_copy, wrap

# Training settings that suit each model preset (TrainConfig fields left None take these).
PRESET_DEFAULTS = {
    "tiny": dict(ctx=256, batch=4, lr=3e-3, warmup_steps=2, eval_every=10, eval_batches=1),
    "small": dict(ctx=2048, batch=8, lr=2e-3, warmup_steps=20, eval_every=50, eval_batches=2),
    "gpu": dict(ctx=8192, batch=8, lr=1e-3, warmup_steps=30, eval_every=100, eval_batches=2),
    "needle-tiny": dict(ctx=96, batch=16, lr=3e-3, warmup_steps=20, eval_every=100, eval_batches=2),
    "needle": dict(ctx=4096, batch=16, lr=2e-3, warmup_steps=50, eval_every=200, eval_batches=2, curriculum=0.3),
}


BPE_VOCAB = 4096  # the subword tokenizer trained for the 'bpe' presets


@dataclass
class TrainConfig:
    """What to train and for how long; None fields take the preset's defaults (PRESET_DEFAULTS)."""

    data: str | None = None
    out: str = "runs/train"
    preset: str = "tiny"
    attention: str = "both"
    ctx: int | None = None
    batch: int | None = None
    max_steps: int | None = None
    time_budget: float | None = None
    lr: float | None = None
    warmup_steps: int | None = None
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    retrieval_frac: float = 0.75
    tasks: tuple[str, ...] | None = None  # needle-family tasks of the retrieval rows (None: all)
    answer_weight: float = 1.0
    curriculum: float | None = None
    tokenizer: str | None = None
    workers: int = 0
    eval_every: int | None = None
    eval_batches: int | None = None
    save_every: int = 200
    seed: int = 0
    device: str | None = None
    nsa: str | None = None
    nsa_impl: str = "auto"
    csv: str | None = None
    plot: str | None = None
    resume: bool = False
    fsdp: bool = False  # under torchrun: FSDP2 (fully_shard) instead of DistributedDataParallel
    force: bool = False  # start over in an `out` that holds a run (else: ValueError)
    extra: dict = field(default_factory=dict)

    def resolved(self) -> "TrainConfig":
        """A copy with the preset defaults filled in, checked; ValueError on bad values."""
        if self.preset not in PRESET_DEFAULTS:
            raise ValueError(f"unknown preset {self.preset!r}; presets: {', '.join(PRESET_DEFAULTS)}")
        if self.attention not in ("nsa", "full", "both"):
            raise ValueError(f"attention must be nsa, full or both, got {self.attention!r}")
        if self.max_steps is None and self.time_budget is None:
            raise ValueError("give a budget: a step count (--max-steps) and/or seconds (--time-budget)")
        values = {**PRESET_DEFAULTS[self.preset], **{k: v for k, v in asdict(self).items() if v is not None}}
        values.setdefault("curriculum", 0.0)
        cfg = TrainConfig(**values)
        if not 0 <= cfg.curriculum < 1:
            raise ValueError(f"curriculum must be a share of the budget in [0, 1), got {cfg.curriculum}")
        if cfg.answer_weight < 0:
            raise ValueError(f"answer weight must be at least 0, got {cfg.answer_weight}")
        if cfg.workers < 0:
            raise ValueError(f"workers must be at least 0, got {cfg.workers}")
        for name in ("ctx", "batch", "eval_every", "eval_batches", "save_every"):
            if getattr(cfg, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(cfg, name)}")
        if cfg.max_steps is not None and cfg.max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {cfg.max_steps}")
        if cfg.time_budget is not None and cfg.time_budget <= 0:
            raise ValueError(f"time_budget must be positive, got {cfg.time_budget}")
        cfg.csv = cfg.csv or str(Path(cfg.out) / "train.csv")
        cfg.plot = cfg.plot or str(Path(cfg.out) / "train_loss.png")
        return cfg

    @property
    def attentions(self) -> tuple[str, ...]:
        return ("nsa", "full") if self.attention == "both" else (self.attention,)


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over warmup_steps, then cosine decay to 10% as progress (0..1 of the budget) ends."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def progress_of(cfg: TrainConfig, step: int, wall: float) -> float:
    """Fraction of the budget used: the larger of steps and seconds when both are given."""
    parts = []
    if cfg.max_steps is not None:
        parts.append(step / cfg.max_steps)
    if cfg.time_budget is not None:
        parts.append(wall / cfg.time_budget)
    return max(parts)


def length_at(cfg: TrainConfig, progress: float) -> int:
    """The curriculum: ctx/8, ctx/4, ctx/2 (those of at least 128 tokens) in equal shares of the first
    `curriculum` of the budget, then ctx."""
    stages = [cfg.ctx >> i for i in (3, 2, 1) if cfg.ctx >> i >= 128]
    if not cfg.curriculum or progress >= cfg.curriculum or not stages:
        return cfg.ctx
    return stages[min(len(stages) - 1, int(progress / cfg.curriculum * len(stages)))]


def lm_loss(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor | None = None, answer_weight: float = 0.0,
            answer_tokens: float | None = None):
    """Training loss (mean next-token loss, plus answer_weight x the mean over the answer tokens of
    mask), per-token losses [B, T], and per-token argmax hits [B, T]. answer_tokens, when given, divides
    the answer tokens' summed loss instead of their count (a rank's share of the global batch's count)."""
    logits = model(ids[:, :-1])
    targets = ids[:, 1:]
    per_token = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none").view_as(targets)
    loss = per_token.mean()
    if answer_weight and mask is not None and answer_tokens is None and mask.any():
        loss = loss + answer_weight * per_token[mask].mean()
    elif answer_weight and mask is not None and answer_tokens:
        loss = loss + answer_weight * per_token[mask].sum() / answer_tokens
    return loss, per_token.detach(), (logits.detach().argmax(-1) == targets)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_triton_nsa(cfg: TrainConfig, device: torch.device) -> str:
    """On CUDA with nsa_impl 'triton', confirm the kernel runs and matches the reference (forward and
    backward, bf16, the model's head sizes). Returns what will run; raises RuntimeError saying why not."""
    mcfg = preset(cfg.preset, **({"nsa": cfg.nsa} if cfg.nsa else {}))
    if device.type != "cuda" or cfg.nsa_impl == "reference":
        return "PyTorch reference (nsa_attention_ref)"
    fn = nsa_function(device, "triton")
    from nsa_bench.kernels import mean_pool_compress, nsa_attention_ref

    nsa = mcfg.nsa_config
    t = min(cfg.ctx, 2048)
    gen = torch.Generator(device=device).manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, device=device, generator=gen, dtype=torch.bfloat16).requires_grad_()

    b, hq, h, d = 1, mcfg.n_heads, mcfg.n_kv_heads, mcfg.head_dim
    q, k, v = rand(b, t, hq, d), rand(b, t, h, d), rand(b, t, h, d)
    gates = [torch.rand(b, t, hq, device=device, generator=gen).to(torch.bfloat16).requires_grad_() for _ in range(3)]
    results = []
    try:
        for f in (fn, nsa_attention_ref):
            for x in (q, k, v, *gates):
                x.grad = None
            out = f(q, k, v, mean_pool_compress(k, nsa), mean_pool_compress(v, nsa), *gates, nsa)
            out.float().square().sum().backward()
            results.append([x.detach().float() for x in (out, q.grad, k.grad, v.grad)])
    except Exception as error:  # the kernel failed to compile or run on this GPU
        raise RuntimeError(f"the Triton NSA kernel failed on {torch.cuda.get_device_name(device)}: "
                           f"{type(error).__name__}: {error}") from error
    # Norm-wide error here, not kernel_check.rel_err (max-abs): this quick check leaves near-tie rows of
    # the top-n selection in, where bf16 rounding may pick another block for a whole row; a norm absorbs
    # a few such rows, a max-abs measure would stop a healthy training run.
    for name, got, want in zip(("output", "dq", "dk", "dv"), *results):
        err = float((got - want).norm() / want.norm().clamp_min(1e-6)) if got.numel() else 0.0
        if not err <= 0.05:
            raise RuntimeError(f"the Triton NSA kernel disagrees with the reference on {name}: "
                               f"relative error (norm) {err:.3g} > 0.05")
    return "Triton (nsa_bench.kernels.nsa_attention)"


class _Run:
    """One model's training state: model (net: what trains it, the model wrapped for this world size),
    optimizer, step, training seconds so far."""

    def __init__(self, cfg: TrainConfig, attention: str, device: torch.device, tokenizer, ranks: Ranks = Ranks()):
        self.cfg, self.attention, self.device, self.ranks = cfg, attention, device, ranks
        self.sharded = ranks.distributed and cfg.fsdp
        self.dir = Path(cfg.out) / attention
        vocab = preset(cfg.preset).vocab_size if tokenizer.name == "byte" else _round_up(tokenizer.vocab_size, 64)
        changes = dict(attention=attention, max_seq_len=cfg.ctx, vocab_size=vocab, tokenizer=tokenizer.name,
                       **({"nsa": cfg.nsa} if cfg.nsa else {}))
        torch.manual_seed(cfg.seed)
        state = None
        if cfg.resume and (self.dir / "train_state.pt").is_file():
            self.model = load_checkpoint(self.dir, device, nsa_impl=cfg.nsa_impl)
            state = torch.load(self.dir / "train_state.pt", map_location=device, weights_only=True)  # no code
        else:
            self.model = Transformer(preset(cfg.preset, **changes), nsa_impl=cfg.nsa_impl).to(device)
        self.net = wrap(self.model, ranks, cfg.fsdp)
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        other = [p for p in self.model.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
            lr=cfg.lr, betas=(0.9, 0.95), **({"fused": True} if device.type == "cuda" else {}),
        )
        self.step, self.wall, self.tokens = 0, 0.0, 0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        if state is not None:
            load_optimizer(self.model, self.opt, state["optimizer"], self.sharded)
            self.step, self.wall, self.tokens = state["step"], state["wall"], state["tokens"]

    def done(self) -> bool:
        return progress_of(self.cfg, self.step, self.wall) >= 1.0

    def save(self) -> None:
        """Rank 0 writes the checkpoint (under FSDP every rank gathers its shards first)."""
        if not (self.sharded or self.ranks.main):
            return
        weights, optimizer = full_states(self.model, self.opt, self.sharded)
        if not self.ranks.main:
            return
        save_checkpoint(plain_copy(self.model, weights) if self.sharded else self.model, self.dir)
        torch.save({"optimizer": optimizer, "step": self.step, "wall": self.wall,
                    "tokens": self.tokens, "train_config": asdict(self.cfg)}, self.dir / "train_state.pt")

    def train_step(self, ids: torch.Tensor, mask: torch.Tensor) -> dict:
        """One optimizer step on the global batch (ids, mask); each rank trains on its rows of it."""
        cfg, ranks = self.cfg, self.ranks
        lr = lr_at(cfg, self.step, progress_of(cfg, self.step, self.wall))
        for group in self.opt.param_groups:
            group["lr"] = lr
        n_tokens, answer_tokens = ids.shape[0] * (ids.shape[1] - 1), None
        if ranks.distributed:
            if ids.shape[0] % ranks.world_size:
                raise ValueError(f"a batch of {ids.shape[0]} rows does not split over {ranks.world_size} processes")
            answer_tokens = float(mask.sum()) / ranks.world_size  # the gradients are averaged over the ranks
            ids, mask = ids[ranks.rank :: ranks.world_size], mask[ranks.rank :: ranks.world_size]
        ids, mask = ids.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)
        _sync(self.device)
        t0 = time.perf_counter()
        with bf16_autocast(self.device):
            loss, per_token, _ = lm_loss(self.net, ids, mask, cfg.answer_weight, answer_tokens)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP
            grad_norm = grad_norm.full_tensor()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        _sync(self.device)
        seconds = distributed.all_reduce([time.perf_counter() - t0], self.device, "max")[0]
        self.step += 1
        self.wall += seconds
        self.tokens += n_tokens
        total, answer_sum, answers = distributed.all_reduce(
            [float(per_token.sum()), float(per_token[mask].sum()), float(mask.sum())], self.device)
        answer_loss = answer_sum / answers if answers else float("nan")
        peak = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else float("nan")
        return {"step": self.step, "loss": total / n_tokens, "answer_loss": answer_loss, "lr": lr,
                "length": ids.shape[1] - 1,
                "grad_norm": float(grad_norm), "step_s": seconds, "tokens_per_s": n_tokens / seconds,
                "wall_s": self.wall, "tokens": self.tokens, "peak_mem_gb": peak}

    def warm_up(self, ids: torch.Tensor) -> None:
        """An untimed forward/backward that compiles kernels; the weights do not change."""
        with bf16_autocast(self.device):
            loss, _, _ = lm_loss(self.net, ids[self.ranks.rank :: self.ranks.world_size].to(self.device))
        loss.backward()
        self.opt.zero_grad(set_to_none=True)
        _sync(self.device)

    @torch.no_grad()
    def evaluate(self, data: TrainData) -> dict:
        """Held-out text loss, and exact match on held-out needle-family prompts at ctx (every answer
        token the argmax, i.e. what greedy decoding writes), overall and per task, and the share of
        answer tokens right (teacher-forced: partial retrieval shows here first)."""
        self.model.eval()
        losses, hits, tasks, token_hits = [], [], [], []
        with bf16_autocast(self.device):
            for i in range(self.cfg.eval_batches):
                ids = data.val_text(i).to(self.device)
                losses.append(float(lm_loss(self.model, ids)[0]))
            for i in range(self.cfg.eval_batches):
                ids, mask, names = data.val_retrieval(i)
                ids, mask = ids.to(self.device), mask.to(self.device)
                hit = lm_loss(self.model, ids)[2]
                hits += [bool(hit[r][mask[r]].all()) for r in range(ids.shape[0])]
                token_hits += hit[mask].tolist()
                tasks += names
        self.model.train()
        per_task = {f"val_em_{t}": sum(h for h, n in zip(hits, tasks) if n == t) / tasks.count(t) for t in dict.fromkeys(tasks)}
        return {"val_loss": sum(losses) / len(losses), "val_answer_acc": sum(hits) / len(hits),
                "val_answer_n": len(hits), "val_answer_token_acc": sum(token_hits) / max(1, len(token_hits)), **per_task}


def training_tokenizer(cfg: TrainConfig, text: str, ranks: Ranks = Ranks()):
    """cfg.tokenizer, else the preset's: 'byte', a tokenizer directory, or 'bpe': a BPE tokenizer
    trained on the corpus and the needle family's wording, saved as OUT/tokenizer (reused on resume;
    rank 0 trains it, the other ranks load it)."""
    spec = cfg.tokenizer or preset(cfg.preset).tokenizer
    if spec != "bpe":
        return load_tokenizer(spec)
    path = Path(cfg.out).resolve() / "tokenizer"
    if cfg.resume and path.is_dir():
        return load_tokenizer(str(path))
    tokenizer = train_bpe(tokenizer_text(text, cfg.seed), path, BPE_VOCAB) if ranks.main else None
    distributed.barrier()
    return tokenizer or load_tokenizer(str(path))


def slow_on_cpu(cfg: TrainConfig, device: torch.device) -> str | None:
    """A warning when the run will take long on a CPU (a model or context meant for a GPU), else None."""
    if device.type != "cpu" or (cfg.preset == "tiny" and cfg.ctx <= 1024):
        return None
    return (f"--preset {cfg.preset} at {cfg.ctx} tokens on the CPU: each step may take seconds to minutes; "
            "--preset tiny is the CPU-sized model")


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def train(cfg: TrainConfig, on_step: Callable[[str, dict], None] | None = None, progress: bool = True) -> dict:
    """Train cfg.attentions in turn under the same budget; returns {attention: final row}.

    on_step(attention, row) is called after each step's row is written (logging, or stopping by raising).
    """
    cfg = cfg.resolved()
    device = distributed.rank_device(cfg.device)
    ranks = distributed.init(device)
    if cfg.batch % ranks.world_size:
        raise ValueError(f"the global batch ({cfg.batch}) must split evenly over {ranks.world_size} processes")
    existing = [p for p in [Path(cfg.csv)] + [Path(cfg.out) / a / "config.json" for a in cfg.attentions] if p.exists()]
    if existing and not (cfg.resume or cfg.force):
        raise ValueError(f"{cfg.out} holds a run already ({existing[0]}): --resume continues it, --force starts over, "
                         "or give another --out")
    distributed.barrier()  # every rank has looked before rank 0 writes
    progress = progress and ranks.main
    warning = slow_on_cpu(cfg, device)
    if warning and progress:
        from rich.console import Console

        Console(stderr=True).print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    text = load_corpus(cfg.data) if cfg.data else default_corpus(seed=cfg.seed)
    tokenizer = training_tokenizer(cfg, text, ranks)
    data = TrainData(text, tokenizer, cfg.ctx, cfg.batch, cfg.seed, cfg.retrieval_frac,
                     **({"tasks": tuple(cfg.tasks)} if cfg.tasks else {}))
    batches = Prefetcher(data, cfg.workers)  # forks its workers now, before CUDA starts
    if device.type == "cuda" and cfg.nsa_impl == "auto":
        cfg.nsa_impl = "triton"  # training at long context on a GPU: never fall back to the reference silently
    if "nsa" in cfg.attentions:
        nsa_function(device, cfg.nsa_impl)  # fails early when the requested implementation cannot run here
    nsa_runs = check_triton_nsa(cfg, device) if "nsa" in cfg.attentions else ""
    csv = Path(cfg.csv)
    if ranks.main and not cfg.resume and csv.exists():
        csv.unlink()
    writer = None if not ranks.main else ResultWriter(csv, extra={
        "kind": "train", "suite": "train", "model": cfg.preset, "ctx_len": cfg.ctx, "batch": cfg.batch,
        "seed": cfg.seed, "data": cfg.data or describe_default_corpus(), "tokenizer": tokenizer.name,
        "retrieval_frac": cfg.retrieval_frac, "answer_weight": cfg.answer_weight, "curriculum": cfg.curriculum,
        "tasks": ",".join(data.tasks),
        "n_text_tokens": data.n_text_tokens,
        "max_steps": cfg.max_steps, "time_budget_s": cfg.time_budget,
        "world_size": ranks.world_size, "parallel": engine(ranks, cfg.fsdp), **cfg.extra,
    })
    finals = {}
    try:
        for attention in cfg.attentions:
            run = _Run(cfg, attention, device, tokenizer, ranks)
            if writer:
                writer.rows = [r for r in writer.rows if r.get("attention") != attention or int(r["step"]) <= run.step]
            fixed = {"attention": attention, "params": run.model.num_params(), "status": "ok",
                     "nsa_config": run.model.cfg.nsa if attention == "nsa" else "",
                     "impl_detail": nsa_runs if attention == "nsa" else f"torch SDPA ({device.type})"}
            finals[attention] = _train_one(cfg, run, data, batches, writer, fixed, on_step, progress)
            del run
            if device.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        batches.close()
    if finals and ranks.main:
        from nsa_bench.train_plot import plot_training

        plot_training(csv, cfg.plot)
    return finals


def _train_one(cfg, run: _Run, data: TrainData, batches: Prefetcher, writer: ResultWriter | None, fixed: dict, on_step,
               show: bool) -> dict:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    row: dict = {}
    if run.done():
        return {**fixed, "step": run.step, "wall_s": run.wall}
    if run.device.type == "cuda":  # compile the kernels for every length the curriculum uses
        for length in sorted({length_at(cfg, p / 100) for p in range(100)}):
            run.warm_up(data.batch_at(-1, length)[0])
    columns = [TextColumn(f"[bold]{run.attention:4s}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn()]
    with Progress(*columns, disable=not show, transient=False) as bar:
        task = bar.add_task(run.attention, total=1.0, info="", completed=progress_of(cfg, run.step, run.wall))
        said = time.monotonic()
        try:
            while not run.done():
                length = length_at(cfg, progress_of(cfg, run.step, run.wall))
                waited = time.perf_counter()
                batch = batches.get(run.step, length)
                waited = time.perf_counter() - waited  # > 0 for long: data, not the GPU, sets the pace
                row = {**fixed, **run.train_step(*batch), "data_wait_s": waited}
                if run.step % cfg.eval_every == 0 or run.done():
                    row.update(run.evaluate(data))
                if writer:
                    writer.write(row)
                if run.step % cfg.save_every == 0 or run.done():
                    run.save()
                info = f"step {run.step} loss {row['loss']:.3f} {row['tokens_per_s']:,.0f} tok/s"
                bar.update(task, completed=min(1.0, progress_of(cfg, run.step, run.wall)), info=info)
                if show and not bar.console.is_terminal and ("val_loss" in row or time.monotonic() - said > 30):
                    said = time.monotonic()  # a log gets a line at each evaluation and every 30 s, not a live bar
                    held_out = f" held-out {row['val_loss']:.3f}" if "val_loss" in row else ""
                    bar.console.print(f"{run.attention} {info}{held_out} ({bar.tasks[0].percentage:.0f}%)",
                                      highlight=False, soft_wrap=True)
                if on_step is not None:
                    on_step(run.attention, row)
        except torch.cuda.OutOfMemoryError as error:
            row = {**fixed, "step": run.step, "status": status_of(error)}
            if writer:
                writer.write(row)
            run.opt.zero_grad(set_to_none=True)
    return row
