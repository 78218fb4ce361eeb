"""What one `nsa-bench kernels` run measures: the spec, its presets, the spec of the command's
options (kernel_options.OPTIONS) and the command line that reproduces a spec."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import torch

from nsa_bench.errors import UsageError
from nsa_bench.flops import Problem, parse_size
from nsa_bench.kernels.config import NSAConfig
from nsa_bench.suites.kernel_options import NSA_OVERRIDES, OPTIONS
from nsa_bench.timing import FLUSH_MODES

IMPLS = ("fa2", "cudnn", "nsa", "fla", "nsa_triton", "ref")  # also the order of a sweep: baselines first
MODES = ("fwd", "bwd", "decode")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class KernelBenchSpec:
    """What one `nsa-bench kernels` run measures."""

    seq_lens: tuple[int, ...] = (8192, 16384, 32768, 65536)
    batch: int = 1
    q_heads: int = 64
    kv_heads: int = 4
    dk: int = 128
    dv: int = 128
    dtype: str = "bf16"
    nsa: NSAConfig = field(default_factory=NSAConfig)
    impls: tuple[str, ...] = ("fa2", "cudnn", "nsa")
    modes: tuple[str, ...] = MODES
    stages: bool = True
    cuda_graphs: bool = True
    warmup: int = 5
    repeats: int = 20
    decode_batch: int = 8
    check_rows: int = 1024
    check_prefix: int = 2048
    ref_max_len: int = 4096
    baseline_max_len: int = 131072  # fa2/cudnn fwd and bwd beyond it: rows that say so
    tie_rtol: float = 1e-2
    l2_flush: str = "read"  # nsa_bench.timing.FLUSH_MODES
    interpret: bool = False
    seed: int = 0

    @property
    def device(self) -> torch.device:
        return torch.device("cpu" if self.interpret else "cuda")

    def problem(self, seq_len: int, mode: str) -> Problem:
        batch = self.decode_batch if mode == "decode" else self.batch
        return Problem(seq_len, batch, self.q_heads, self.kv_heads, self.dk, self.dv, self.dtype)

    def validate(self) -> None:
        """Raise ValueError on a spec that cannot run."""
        for name in ("batch", "q_heads", "kv_heads", "dk", "dv", "repeats", "decode_batch", "check_rows",
                     "baseline_max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError("warmup must be >= 0")
        if self.q_heads % self.kv_heads:
            raise ValueError(f"q_heads ({self.q_heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.l2_flush not in FLUSH_MODES:
            raise ValueError(f"l2-flush must be one of {', '.join(FLUSH_MODES)}, got {self.l2_flush!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not self.seq_lens or min(self.seq_lens) < 1:
            raise ValueError("give at least one positive sequence length")
        for name, values, known in (("impl", self.impls, IMPLS), ("mode", self.modes, MODES)):
            bad = [v for v in values if v not in known]
            if bad or not values:
                raise ValueError(f"unknown {name} {', '.join(bad) or '(none)'}; choose from {', '.join(known)}")


# Defaults: the H100 setup, and the tiny CPU smoke run of --interpret.
H100_SPEC = KernelBenchSpec()
INTERPRET_SPEC = KernelBenchSpec(
    seq_lens=(64, 96), batch=1, q_heads=2, kv_heads=1, dk=16, dv=16, dtype="fp16",
    nsa=NSAConfig.parse("8/4/16/4/32"), impls=("fa2", "nsa", "ref"), warmup=0, repeats=2,
    decode_batch=2, check_rows=128, check_prefix=128, ref_max_len=128, interpret=True,
)


def _csv_list(text: str, what: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if not items:
        raise ValueError(f"give at least one {what}")
    return items


def spec_command(spec: KernelBenchSpec, out: str, reports: str, tag: str | None) -> str:
    """The full `nsa-bench kernels` command line that reproduces a spec."""
    parts = ["nsa-bench kernels"] + (["--interpret"] if spec.interpret else [])
    parts += [text for text in (option.shown(spec) for option in OPTIONS) if text]
    parts += [f"--out {out}", f"--reports {reports}"] + ([f"--tag {tag}"] if tag else [])
    return " ".join(parts)


def spec_from_options(*, interpret: bool, out: str, reports: str, tag: str | None, **given) -> tuple[KernelBenchSpec, str]:
    """The spec of the command's OPTIONS (keywords; None or absent: the H100 default, or the
    --interpret preset) and its reproducing command. Bad input raises UsageError."""
    unknown = set(given) - {o.name for o in OPTIONS}
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(sorted(unknown))}")
    base = INTERPRET_SPEC if interpret else H100_SPEC
    values = {o.name: given[o.name] if given.get(o.name) is not None else o.default for o in OPTIONS}
    try:
        changes = {o.name: values[o.name] for o in OPTIONS
                   if values[o.name] is not None and o.name in KernelBenchSpec.__dataclass_fields__}
        if values["seq"] is not None:
            changes["seq_lens"] = tuple(parse_size(x) for x in _csv_list(values["seq"], "sequence length"))
        if values["impl"] is not None:
            changes["impls"] = _csv_list(values["impl"], "implementation")
        if values["mode"] is not None:
            changes["modes"] = _csv_list(values["mode"], "mode")
        config = NSAConfig.parse(values["nsa_config"]) if values["nsa_config"] is not None else base.nsa
        overrides = {k: values[k] for k in NSA_OVERRIDES if values[k] is not None}
        changes["nsa"] = replace(config, **overrides) if overrides else config
        spec = replace(base, **changes)
        spec.validate()
    except ValueError as error:
        raise UsageError(str(error)) from None
    if tag is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", tag):
        raise UsageError(f"--tag {tag!r}: use letters, digits, '.', '_' or '-'")
    return spec, spec_command(spec, out, reports, tag)
