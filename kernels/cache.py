"""NSACache: the key/value cache of one NSA layer for batched decoding.

Holds, preallocated to `max_len` tokens, the raw keys/values (and the selection/window
branches' own keys/values when the layer has them), the compressed keys/values, and the
per-sequence lengths as a device tensor, so a batch of sequences of different lengths decodes
together and a step needs no host synchronisation. Storage is head-major, [B, H, T_max, d],
so a tile of consecutive tokens of one head is one contiguous read; the compressed tensors
have one extra row at the end that absorbs the writes of steps that complete no block.
"""

from __future__ import annotations

import torch
from torch import nn

from .compression import mean_pool_compress
from .config import NSAConfig
from .launch_replay import current_stream, record, specialization_key
from .triton_common import cache_strides, new_output, next_pow2


class NSACache:
    """KV cache for NSA decoding (see the module docstring).

    compress_k / compress_v: the layer's compression modules (e.g. CompressionMLP), applied to
    each block of `cmp_block` raw keys/values exactly as in training; None means mean pooling,
    which `append` fuses into its one kernel.
    """

    def __init__(
        self, batch: int, max_len: int, kv_heads: int, dk: int, dv: int | None = None,
        config: NSAConfig | None = None, *, dtype: torch.dtype = torch.bfloat16, device="cuda",
        separate_slc: bool = False, separate_win: bool = False,
        compress_k: nn.Module | None = None, compress_v: nn.Module | None = None,
    ):
        dv = dk if dv is None else dv
        for name, value in (("batch", batch), ("max_len", max_len), ("kv_heads", kv_heads), ("dk", dk), ("dv", dv)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"NSACache {name} must be a positive integer, got {value!r}")
        if (compress_k is None) != (compress_v is None):
            raise ValueError("give both compress_k and compress_v (or neither, for mean pooling)")
        self.config = config or NSAConfig()
        self.batch, self.max_len, self.kv_heads, self.dk, self.dv = batch, max_len, kv_heads, dk, dv
        self.dtype, self.device = dtype, torch.empty(0, device=device).device  # 'cuda' -> 'cuda:0'
        self.compress_k, self.compress_v = compress_k, compress_v

        def buf(length, d):
            return new_output((batch, kv_heads, length, d), dtype, self.device)

        self.k, self.v = buf(max_len, dk), buf(max_len, dv)
        self.k_slc, self.v_slc = (buf(max_len, dk), buf(max_len, dv)) if separate_slc else (self.k, self.v)
        self.k_win, self.v_win = (buf(max_len, dk), buf(max_len, dv)) if separate_win else (self.k, self.v)
        self.max_cmp = self.config.num_cmp_blocks(max_len)
        self.k_cmp, self.v_cmp = buf(self.max_cmp + 1, dk), buf(self.max_cmp + 1, dv)
        self.lengths = torch.zeros(batch, dtype=torch.int32, device=self.device)
        self.separate_slc, self.separate_win = separate_slc, separate_win
        self._longest = 0  # host-side upper bound on self.lengths (prefill length + appends)
        self._rows = torch.arange(batch, device=self.device)
        self._block_offsets = torch.arange(self.config.cmp_block, device=self.device)
        self.workspaces: dict = {}  # decode plans and scratch buffers (kernels/decode.py)

    # ---- filling --------------------------------------------------------------------------------

    def _check_tokens(self, name, x, tokens, d):
        expect = (self.batch, tokens, self.kv_heads, d)
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != expect:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must have shape {expect} [B, T, H, d], got {got}")
        if x.dtype != self.dtype or x.device != self.device:
            raise ValueError(f"{name} must be {self.dtype} on {self.device}, got {x.dtype} on {x.device}")

    def _branch_inputs(self, tokens, k_slc, v_slc, k_win, v_win):
        for flag, names, pair in ((self.separate_slc, ("k_slc", "v_slc"), (k_slc, v_slc)),
                                  (self.separate_win, ("k_win", "v_win"), (k_win, v_win))):
            given = [t is not None for t in pair]
            if any(given) != flag or not all(given) and flag:
                need = "needs" if flag else "has no"
                raise ValueError(f"this cache {need} {names[0]}/{names[1]} (separate_{names[0][2:]}={flag})")
            if flag:
                self._check_tokens(names[0], pair[0], tokens, self.dk)
                self._check_tokens(names[1], pair[1], tokens, self.dv)

    def _compress(self, module, x):
        if module is None:
            return mean_pool_compress(x, self.config)
        param = next(module.parameters(), None)
        return module(x if param is None else x.to(param.dtype)).to(self.dtype)

    @torch.no_grad()
    def prefill(self, k, v, lengths=None, *, k_slc=None, v_slc=None, k_win=None, v_win=None) -> None:
        """Fill the cache from a prompt: k/v [B, T, H, d] (padded), sequence b's first lengths[b]
        tokens valid (default: all T). Compressed tokens of every complete block are computed
        with the cache's compression."""
        if not isinstance(k, torch.Tensor) or k.dim() != 4:
            raise ValueError("k must be a 4-D tensor [B, T, H, dk]")
        tokens = k.shape[1]
        if tokens > self.max_len:
            raise ValueError(f"prefill of {tokens} tokens does not fit max_len={self.max_len}")
        self._check_tokens("k", k, tokens, self.dk)
        self._check_tokens("v", v, tokens, self.dv)
        self._branch_inputs(tokens, k_slc, v_slc, k_win, v_win)
        if lengths is None:
            lengths = torch.full((self.batch,), tokens, dtype=torch.int32)
        lengths = torch.as_tensor(lengths, dtype=torch.int32).to(self.device)
        if lengths.shape != (self.batch,):
            raise ValueError(f"lengths must have shape ({self.batch},), got {tuple(lengths.shape)}")
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1 or hi > tokens:
            raise ValueError(f"lengths must be in [1, {tokens}], got {lo}..{hi}")
        for dst, src in ((self.k, k), (self.v, v), (self.k_slc, k_slc), (self.v_slc, v_slc),
                         (self.k_win, k_win), (self.v_win, v_win)):
            if src is not None:
                dst[:, :, :tokens].copy_(src.transpose(1, 2))
        n_cmp = self.config.num_cmp_blocks(tokens)
        if n_cmp:
            self.k_cmp[:, :, :n_cmp].copy_(self._compress(self.compress_k, k).transpose(1, 2))
            self.v_cmp[:, :, :n_cmp].copy_(self._compress(self.compress_v, v).transpose(1, 2))
        self.lengths.copy_(lengths)
        self._longest = hi

    @torch.no_grad()
    def append(self, k_new, v_new, *, k_slc=None, v_slc=None, k_win=None, v_win=None) -> None:
        """Append one token per sequence (k/v [B, 1, H, d]) at each sequence's own length; every
        cmp_stride tokens, once cmp_block exist, also append one compressed token. Allocates
        nothing with mean pooling (a learned compression runs its module on one block). New
        tokens with the layout of the previous append's replay its launch (launch_replay.py)."""
        if self._longest + 1 > self.max_len:
            raise ValueError(f"append would pass max_len={self.max_len}")
        ks, vs = (k_slc, v_slc) if self.separate_slc else (k_new, v_new)
        kw, vw = (k_win, v_win) if self.separate_win else (k_new, v_new)
        new = (k_new, v_new, ks, vs, kw, vw)
        recorded = self.workspaces.get("append")
        key = specialization_key(*new), k_slc is None, k_win is None  # a non-tensor matches no recording
        if recorded is not None and key == recorded[0]:
            recorded[1](current_stream(self.device), *new)
        else:
            self._check_tokens("k_new", k_new, 1, self.dk)
            self._check_tokens("v_new", v_new, 1, self.dv)
            self._branch_inputs(1, k_slc, v_slc, k_win, v_win)
            replay = self._launch_append(*new)
            if replay is not None:
                self.workspaces["append"] = (key, replay)
        if self.compress_k is not None:
            self._append_learned_compression()
        self._longest += 1

    def _launch_append(self, k_new, v_new, ks, vs, kw, vw):
        """Launch _cache_append_kernel through Triton; its Replay (None under the interpreter)."""
        from .triton_decode import _cache_append_kernel  # noqa: PLC0415 (Triton import kept lazy)

        c = self.config
        return record(_cache_append_kernel, (self.batch,), dict(
            LEN=self.lengths, KN=k_new, VN=v_new, K=self.k, V=self.v, KC=self.k_cmp, VC=self.v_cmp,
            KSN=ks, VSN=vs, KS=self.k_slc, VS=self.v_slc, KWN=kw, VWN=vw, KW=self.k_win, VW=self.v_win,
            s_kn_b=k_new.stride(0), s_kn_h=k_new.stride(2), s_vn_b=v_new.stride(0), s_vn_h=v_new.stride(2),
            **cache_strides("k", self.k), **cache_strides("v", self.v), **cache_strides("kc", self.k_cmp),
            **cache_strides("vc", self.v_cmp), trash_slot=self.max_cmp,
            H=self.kv_heads, DK=self.dk, DV=self.dv, BDK=next_pow2(self.dk), BDV=next_pow2(self.dv),
            CMP_BLOCK=c.cmp_block, CMP_STRIDE=c.cmp_stride, BL=next_pow2(max(c.cmp_block - 1, 1)),
            SEPARATE_SLC=self.separate_slc, SEPARATE_WIN=self.separate_win, MEAN_POOL=self.compress_k is None,
        ), ("KN", "VN", "KSN", "VSN", "KWN", "VWN"), num_warps=4)

    def _append_learned_compression(self) -> None:
        """Run the compression modules on the block ending at the new token (every sequence),
        write the result where a block completed (else into the trash row), bump the lengths."""
        c = self.config
        n_new = self.lengths.long() + 1
        idx = (n_new - c.cmp_block).clamp_min(0)[:, None] + self._block_offsets  # [B, l]
        done = (n_new >= c.cmp_block) & ((n_new - c.cmp_block) % c.cmp_stride == 0)
        slot = torch.where(done, (n_new - c.cmp_block).div(c.cmp_stride, rounding_mode="floor"),
                           torch.full_like(n_new, self.max_cmp))
        for cache, dst, module in ((self.k, self.k_cmp, self.compress_k), (self.v, self.v_cmp, self.compress_v)):
            block = cache[self._rows[:, None], :, idx]  # [B, l, H, d]: one block per sequence
            dst[self._rows, :, slot] = self._compress(module, block)[:, 0]
        self.lengths.add_(1)

    # ---- reading back (for checks) ----------------------------------------------------------------

    def tokens(self, name: str, b: int) -> torch.Tensor:
        """Sequence b's valid part of one cache tensor ('k', 'v', 'k_cmp', ...), token-major
        [T_b, H, d] (T_b = its length, or its number of compressed tokens). Syncs the host."""
        length = int(self.lengths[b])
        count = self.config.num_cmp_blocks(length) if name.endswith("_cmp") else length
        return getattr(self, name)[b, :, :count].transpose(0, 1)
