"""NSAConfig: the hyperparameters of Native Sparse Attention (NSA_SPEC.md notation)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class NSAConfig:
    """NSA block sizes; defaults are the paper's (l=32, d=16, l'=64, n=16, w=512).

    cmp_block  l   tokens per compressed block
    cmp_stride d   stride between compressed blocks (divides l and l')
    slc_block  l'  tokens per selection block
    slc_count  n   selected blocks per query, counting 1 initial and 2 local blocks
    window     w   sliding-window length
    """

    cmp_block: int = 32
    cmp_stride: int = 16
    slc_block: int = 64
    slc_count: int = 16
    window: int = 512

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"NSAConfig.{name} must be a positive integer, got {value!r}")
        if self.cmp_block % self.cmp_stride:
            raise ValueError(
                f"cmp_stride ({self.cmp_stride}) must divide cmp_block ({self.cmp_block})"
            )
        if self.slc_block % self.cmp_stride:
            raise ValueError(
                f"cmp_stride ({self.cmp_stride}) must divide slc_block ({self.slc_block})"
            )
        if self.slc_count < 3:
            raise ValueError(
                f"slc_count must be >= 3 (it counts 1 initial and 2 local blocks), got {self.slc_count}"
            )

    @classmethod
    def parse(cls, text: str) -> "NSAConfig":
        """Build a config from 'l/d/l_sel/n/w', e.g. '32/16/64/16/512' or '8/4/16/4/32'."""
        parts = text.strip().split("/")
        if len(parts) != 5:
            raise ValueError(
                f"NSA config {text!r} must be cmp_block/cmp_stride/slc_block/slc_count/window"
            )
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"NSA config {text!r} must be five integers separated by '/'") from None
        return cls(*values)

    def __str__(self) -> str:
        return f"{self.cmp_block}/{self.cmp_stride}/{self.slc_block}/{self.slc_count}/{self.window}"

    def num_cmp_blocks(self, seq_len: int) -> int:
        """Compressed blocks over a sequence of seq_len tokens: those wholly inside it."""
        if seq_len < self.cmp_block:
            return 0
        return (seq_len - self.cmp_block) // self.cmp_stride + 1

    def num_slc_blocks(self, seq_len: int) -> int:
        """Selection blocks that cover a sequence of seq_len tokens (the last may be partial)."""
        return -(-seq_len // self.slc_block)

    def keys_per_query(self, t: int) -> int:
        """Keys that query position t (0-indexed) attends to across the three branches."""
        n_cmp = self.num_cmp_blocks(t + 1)
        started = t // self.slc_block + 1
        if started <= self.slc_count:
            n_slc = t + 1
        else:  # n whole blocks, less the future part of the current one
            n_slc = self.slc_count * self.slc_block - (self.slc_block - 1 - t % self.slc_block)
        n_win = min(self.window, t + 1)
        return n_cmp + n_slc + n_win
