"""The baselines of `nsa-bench kernels`: full causal attention through torch SDPA's flash (FA2) and
cuDNN backends, or the flash_attn package, forward, backward and decode, with GQA handled the way
each backend takes it (every Case's detail says how)."""

from __future__ import annotations

import torch

from nsa_bench.results import Unsupported
from nsa_bench.suites.kernel_cases import Case, nsa_inputs
from nsa_bench.suites.kernel_spec import DTYPES, KernelBenchSpec
from nsa_bench.timing import backward_call

def _sdpa_backend(impl: str):
    from torch.nn.attention import SDPBackend

    name = "FLASH_ATTENTION" if impl == "fa2" else "CUDNN_ATTENTION"
    backend = getattr(SDPBackend, name, None)
    if backend is None:
        raise Unsupported(f"this torch has no SDPBackend.{name}")
    return backend


_PROBES: dict[tuple, bool] = {}


def _sdpa_runs(impl: str, spec: KernelBenchSpec, gqa: bool) -> bool:
    """Whether SDPA with the impl's backend runs fwd+bwd here on a tiny problem (cached)."""
    from torch.nn.attention import sdpa_kernel

    key = (impl, spec.dtype, spec.dk, spec.dv, spec.q_heads // spec.kv_heads, gqa, str(spec.device))
    if key not in _PROBES:
        group = spec.q_heads // spec.kv_heads
        dtype = DTYPES[spec.dtype]
        q = torch.randn(1, 2 * group, 128, spec.dk, device=spec.device, dtype=dtype, requires_grad=True)
        k = torch.randn(1, 2 if gqa else 2 * group, 128, spec.dk, device=spec.device, dtype=dtype)
        v = torch.randn(1, k.shape[1], 128, spec.dv, device=spec.device, dtype=dtype)
        kwargs = {"enable_gqa": True} if gqa else {}
        try:
            with sdpa_kernel(_sdpa_backend(impl)):
                out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, **kwargs)
            out.sum().backward()
            if spec.device.type == "cuda":
                torch.cuda.synchronize()
            _PROBES[key] = True
        except (RuntimeError, TypeError, Unsupported):
            _PROBES[key] = False
    return _PROBES[key]


def _flash_attn_package():
    """flash_attn's functions when the package imports (CUDA only), else None."""
    try:
        from flash_attn import flash_attn_func, flash_attn_with_kvcache
    except Exception:
        return None
    return flash_attn_func, flash_attn_with_kvcache


def full_attention_case(impl: str, spec: KernelBenchSpec, seq_len: int, mode: str) -> Case:
    """fa2 (flash_attn, else SDPA's flash backend) or cudnn (SDPA's cuDNN backend)."""
    from nsa_bench.environment import cudnn_attention_available, fa2_baseline

    sdpa = torch.nn.functional.scaled_dot_product_attention
    batch = spec.decode_batch if mode == "decode" else spec.batch
    group = spec.q_heads // spec.kv_heads

    if spec.interpret:
        if impl == "cudnn":
            raise Unsupported("cuDNN attention needs a CUDA GPU")
        detail = "torch SDPA on the CPU (interpreter smoke stand-in, not FlashAttention)"
        backend_ctx = None
    elif impl == "fa2" and _flash_attn_package() is not None:
        return _flash_attn_case(spec, seq_len, mode, batch, fa2_baseline())
    else:
        if impl == "cudnn" and not cudnn_attention_available():
            raise Unsupported("torch SDPA's cuDNN backend does not run here")
        detail = fa2_baseline() if impl == "fa2" else "torch SDPA cuDNN backend"
        backend_ctx = _sdpa_backend(impl)

    def attend(q, k, v, **kwargs):
        if backend_ctx is None:
            return sdpa(q, k, v, **kwargs)
        from torch.nn.attention import sdpa_kernel

        with sdpa_kernel(backend_ctx):
            return sdpa(q, k, v, **kwargs)

    args = nsa_inputs(spec, seq_len, batch, query_len=1 if mode == "decode" else None)
    q, k, v = (args[n].transpose(1, 2).contiguous() for n in ("q", "k", "v"))  # SDPA: [B,H,T,D]
    del args
    if mode == "decode":
        # One new token per sequence: its G query heads of a KV group become G query rows over
        # that group's cache, so no KV head is repeated and the cache is read once.
        q_step = q.reshape(batch, spec.kv_heads, group, spec.dk)  # query head h*G + g uses KV head h
        detail += "; decode: G query heads of a KV group as G query rows, cache read once"
        return Case(lambda: attend(q_step, k, v), detail)

    kwargs = {"is_causal": True}
    if group > 1:
        if spec.interpret or _sdpa_runs(impl, spec, gqa=True):
            kwargs["enable_gqa"] = True
            detail += "; GQA via enable_gqa"
        else:
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
            detail += "; GQA via KV heads repeated before the timed call"
    if mode == "fwd":
        def call():
            with torch.no_grad():
                return attend(q, k, v, **kwargs)
        return Case(call, detail)
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    out = attend(q, k, v, **kwargs)
    return Case(backward_call(out, [q, k, v]), detail)


def _flash_attn_case(spec: KernelBenchSpec, seq_len: int, mode: str, batch: int, detail: str) -> Case:
    """The flash_attn package: native GQA, token-major layout."""
    flash_attn_func, flash_attn_with_kvcache = _flash_attn_package()
    args = nsa_inputs(spec, seq_len, batch, requires_grad=mode == "bwd", query_len=1 if mode == "decode" else None)
    q, k, v = args["q"], args["k"], args["v"]
    if mode == "decode":
        lens = torch.full((batch,), seq_len, dtype=torch.int32, device=q.device)
        return Case(lambda: flash_attn_with_kvcache(q, k, v, cache_seqlens=lens),
                    detail + "; decode: flash_attn_with_kvcache")
    if mode == "fwd":
        def call():
            with torch.no_grad():
                return flash_attn_func(q, k, v, causal=True)
        return Case(call, detail)
    out = flash_attn_func(q, k, v, causal=True)
    return Case(backward_call(out, [q, k, v]), detail)
