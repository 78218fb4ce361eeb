"""Public NSA kernels users would otherwise pick, timed by `nsa-bench kernels` on the same inputs
as the bundled NSA: fla-core's `parallel_nsa` (`--impl fla`; `pip install 'nsa-bench[peers]'`) and
XunhaoLai's native-sparse-attention-triton (`--impl nsa_triton`; not on the package index: install
it from its repository).

What a peer computes differently is said in the row's `impl_detail`; where it cannot run, the
row's status says why (no CUDA GPU, not installed, a head layout it does not take)."""

from __future__ import annotations

import torch

from nsa_bench.environment import flash_attn_importable
from nsa_bench.kernels import mean_pool_compress
from nsa_bench.results import Unsupported
from nsa_bench.suites.kernel_cases import Case, nsa_inputs
from nsa_bench.suites.kernel_spec import KernelBenchSpec
from nsa_bench.timing import backward_call


def _fla_parallel_nsa():
    """fla-core's parallel_nsa and the package's version; Unsupported when it does not import."""
    try:
        import fla
        from fla.ops.nsa import parallel_nsa
    except ImportError:
        raise Unsupported("fla-core is not installed (pip install 'nsa-bench[peers]')") from None
    except Exception as error:  # noqa: BLE001 - it probes the GPU driver on import
        raise Unsupported(f"fla-core does not import here ({type(error).__name__}: {error})") from None
    return parallel_nsa, getattr(fla, "__version__", "?")


def fla_case(spec: KernelBenchSpec, seq_len: int, mode: str) -> Case:
    """fla-core's parallel_nsa (forward, backward, or one decode token over the whole prefix)."""
    if spec.interpret or spec.device.type != "cuda":
        raise Unsupported("fla-core's parallel_nsa needs a CUDA GPU")
    group = spec.q_heads // spec.kv_heads
    if group < 16 or group & (group - 1):
        raise Unsupported(f"fla-core's parallel_nsa takes GQA groups that are powers of 2 of at least 16, not {group}")
    parallel_nsa, version = _fla_parallel_nsa()
    config = spec.nsa
    window = config.window if flash_attn_importable() else 0
    detail = (f"fla-core {version} parallel_nsa: compression by mean pooling over {config.slc_block}-token blocks "
              f"without overlap (not l={config.cmp_block}/d={config.cmp_stride}), top-{config.slc_count} selection "
              f"of {config.slc_block}-token blocks; " + (f"window {window} through flash_attn" if window else
                                                          "no window branch (it needs flash_attn, not installed)"))
    batch = spec.decode_batch if mode == "decode" else spec.batch
    args = nsa_inputs(spec, seq_len, batch, requires_grad=mode == "bwd", query_len=1 if mode == "decode" else None)

    def run():
        return parallel_nsa(args["q"], args["k"], args["v"], args["g_cmp"], args["g_slc"], args["g_win"],
                            block_counts=config.slc_count, block_size=config.slc_block, window_size=window)

    if mode == "decode":
        detail += "; decode: the new token's query over the prefix (no cache kernel)"
    if mode in ("fwd", "decode"):
        def call():
            with torch.no_grad():
                return run()
        return Case(call, detail)
    used = ["q", "k", "v", "g_cmp", "g_slc"] + (["g_win"] if window else [])  # g_win is unused without a window
    return Case(backward_call(run(), [args[name] for name in used]), detail)


def _nsa_triton_ops():
    """compressed_attention and topk_sparse_attention of XunhaoLai's native-sparse-attention-triton;
    Unsupported when the package does not import."""
    try:
        from native_sparse_attention.ops import compressed_attention, topk_sparse_attention
    except ImportError:
        raise Unsupported("native-sparse-attention-triton is not installed (pip install "
                          "git+https://github.com/XunhaoLai/native-sparse-attention-triton)") from None
    except Exception as error:  # noqa: BLE001 - it probes the GPU on import
        raise Unsupported(f"native-sparse-attention-triton does not import here ({type(error).__name__}: {error})") from None
    return compressed_attention, topk_sparse_attention


def nsa_triton_case(spec: KernelBenchSpec, seq_len: int, mode: str) -> Case:
    """XunhaoLai's native-sparse-attention-triton: compressed attention (which also picks the
    top-n blocks) and top-n sparse attention on the same q, k, v and mean-pooled k/v as the
    bundled NSA, their outputs gated and summed in torch; it has no window branch."""
    if mode == "decode":
        raise Unsupported("native-sparse-attention-triton's decode needs its own KV cache; not timed")
    if spec.interpret or spec.device.type != "cuda":
        raise Unsupported("native-sparse-attention-triton needs a CUDA GPU")
    elements = spec.batch * seq_len * spec.q_heads * max(spec.dk, spec.dv)
    if elements >= 2**31:  # at T=256k, 64 heads, d=128 it hit an illegal memory access on the H200
        raise Unsupported(f"native-sparse-attention-triton's kernels use 32-bit offsets: q has {elements} >= 2^31 elements")
    compressed_attention, topk_sparse_attention = _nsa_triton_ops()
    config = spec.nsa
    detail = (f"XunhaoLai native-sparse-attention-triton: compressed_attention (l={config.cmp_block}/"
              f"d={config.cmp_stride}, mean-pooled k/v as for nsa) with top-{config.slc_count} selection of "
              f"{config.slc_block}-token blocks (1 initial, 2 local) and topk_sparse_attention, gated sum in torch; "
              "no window branch")
    args = nsa_inputs(spec, seq_len, spec.batch, requires_grad=mode == "bwd")
    batch, n_cmp = spec.batch, config.num_cmp_blocks(seq_len)
    starts = torch.arange(batch + 1, device=args["q"].device, dtype=torch.int32)
    cu_q, cu_k = starts * seq_len, starts * n_cmp  # varlen sequence starts of q, k, v and of k/v compressed

    def run():
        flat = lambda t: t.reshape(batch * t.shape[1], *t.shape[2:])  # noqa: E731 - [B*T, H, d], varlen
        q, k, v = flat(args["q"]), flat(args["k"]), flat(args["v"])
        k_cmp, v_cmp = flat(mean_pool_compress(args["k"], config)), flat(mean_pool_compress(args["v"], config))
        o_cmp, topk = compressed_attention(q, k_cmp, v_cmp, config.cmp_block, config.cmp_stride, config.slc_block,
                                           config.slc_count, cu_q, cu_k, seq_len, n_cmp, init_blocks=1, local_blocks=2)
        o_slc = topk_sparse_attention(q, k, v, topk, config.slc_block, cu_q)
        gates = lambda name: flat(args[name]).unsqueeze(-1)  # noqa: E731
        return (gates("g_cmp") * o_cmp + gates("g_slc") * o_slc).view(*args["q"].shape[:3], -1)

    if mode == "fwd":
        def call():
            with torch.no_grad():
                return run()
        return Case(call, detail)
    return Case(backward_call(run(), [args[name] for name in ("q", "k", "v", "g_cmp", "g_slc")]), detail)
