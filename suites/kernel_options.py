"""The spec options of `nsa-bench kernels`, each declared once: the command line's flags and help,
`kernel_spec.spec_from_options` and the reproducing command `kernel_spec.spec_command` are made
from OPTIONS. Imports nothing heavy: the CLI reads it before TRITON_INTERPRET is settled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Option:
    """One spec option of `nsa-bench kernels`: its keyword (a KernelBenchSpec field of that name,
    or parsed into one by spec_from_options), its flag ('--a/--no-a' for a switch), help, type,
    how the reproducing command shows it (None: folded into --nsa-config) and its CLI default."""

    name: str
    flag: str
    help: str
    kind: type = int
    show: Callable[[object], object] | None = None  # KernelBenchSpec -> the value
    default: object = None

    def shown(self, spec) -> str | None:  # spec: a KernelBenchSpec
        """This option as the reproducing command writes it, or None."""
        if self.kind is bool:
            on, off = self.flag.split("/")
            return on if self.show(spec) else off
        return None if self.show is None else f"{self.flag} {self.show(spec)}"


def _field(name: str, help: str, kind: type = int) -> Option:
    return Option(name, "--" + name.replace("_", "-"), help, kind, lambda spec: getattr(spec, name))


def _nsa_override(name: str, letter: str) -> Option:
    return Option(name, "--" + name.replace("_", "-"), f"Override {letter} of --nsa-config.")


OPTIONS = (
    Option("seq", "--seq", "Sequence lengths, e.g. 8k,16k,32k,64k or 65536 (default: 8k,16k,32k,64k).", str,
           lambda spec: ",".join(str(n) for n in spec.seq_lens)),
    _field("batch", "Batch of fwd/bwd (default: 1)."),
    _field("q_heads", "Query heads (default: 64)."),
    _field("kv_heads", "Key/value heads (default: 4)."),
    _field("dk", "Query/key head dim (default: 128)."),
    _field("dv", "Value head dim (default: 128)."),
    _field("dtype", "bf16 or fp16 (default: bf16).", str),
    Option("nsa_config", "--nsa-config", "NSA l/d/l_sel/n/w (default: 32/16/64/16/512).", str, lambda spec: spec.nsa),
    _nsa_override("cmp_block", "l"),
    _nsa_override("cmp_stride", "d"),
    _nsa_override("slc_block", "l_sel"),
    _nsa_override("slc_count", "n"),
    _nsa_override("window", "w"),
    Option("impl", "--impl", "Any of nsa,fa2,cudnn,fla (fla-core's parallel_nsa, extra 'peers'),nsa_triton (XunhaoLai's native-sparse-attention-triton),ref (default: nsa,fa2,cudnn).", str, lambda spec: ",".join(spec.impls)),
    Option("mode", "--mode", "Any of fwd,bwd,decode (default: fwd,bwd,decode).", str, lambda spec: ",".join(spec.modes)),
    Option("stages", "--stages/--no-stages", "Also time NSA's forward and backward stage by stage.", bool,
           lambda spec: spec.stages, True),
    Option("cuda_graphs", "--cuda-graph/--no-cuda-graph", "Also time each decode step replayed as a CUDA graph.",
           bool, lambda spec: spec.cuda_graphs, True),
    _field("decode_batch", "Sequences per decode step (default: 8)."),
    _field("warmup", "Untimed calls before timing (default: 5)."),
    _field("repeats", "Timed calls (median, p20, p80) (default: 20)."),
    _field("l2_flush", "How the L2 cache is emptied before each timed call: read (read a 256 MiB buffer: clean "
           "lines left), write (zero it, as triton's do_bench: the timed call then writes the dirty lines back) or "
           "none (default: read).", str),
    _field("check_rows", "Query rows of the forward check (default: 1024)."),
    _field("check_prefix", "Causal prefix of the backward check (default: 2048)."),
    _field("ref_max_len", "Longest T at which ref is timed (default: 4096)."),
    _field("baseline_max_len", "Longest T at which fa2 and cudnn run forward and backward (default: 131072); "
           "beyond it their rows say so and NSA runs alone (decode baselines run at every T)."),
)
NSA_OVERRIDES = ("cmp_block", "cmp_stride", "slc_block", "slc_count", "window")
