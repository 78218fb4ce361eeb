"""Inputs, comparisons and launch replay shared by the Triton NSA tests.

Random inputs are seeded from their shape (tests/seeds.py); errors and tolerances are the shared
ones (suites/kernel_check.py); the seed is in every failure message.
"""

from __future__ import annotations

import torch

from nsa_bench.kernels import launch_replay
from nsa_bench.suites.kernel_check import rel_err, tolerance
from seeds import seed_for

NAMES = ("q", "k", "v", "k_cmp", "v_cmp", "g_cmp", "g_slc", "g_win", "k_slc", "v_slc", "k_win", "v_win")


def make_inputs(batch, seq, q_heads, kv_heads, dk, dv, config, dtype, separate=False, device="cpu"):
    """Random NSA inputs (dict of NAMES) and the seed they came from."""
    seed = seed_for(batch, seq, q_heads, kv_heads, dk, dv, config, dtype, separate)
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen).to(device=device, dtype=dtype)  # noqa: E731
    n_cmp = config.num_cmp_blocks(seq)
    x = {
        "q": rnd(batch, seq, q_heads, dk), "k": rnd(batch, seq, kv_heads, dk), "v": rnd(batch, seq, kv_heads, dv),
        "k_cmp": rnd(batch, n_cmp, kv_heads, dk), "v_cmp": rnd(batch, n_cmp, kv_heads, dv),
    }
    for g in ("g_cmp", "g_slc", "g_win"):
        x[g] = torch.rand(batch, seq, q_heads, generator=gen).to(device=device, dtype=dtype)
    if separate:
        x.update(k_slc=rnd(batch, seq, kv_heads, dk), v_slc=rnd(batch, seq, kv_heads, dv),
                 k_win=rnd(batch, seq, kv_heads, dk), v_win=rnd(batch, seq, kv_heads, dv))
    return x, seed


def make_dout(shape, seed, device="cpu"):
    """A seeded output gradient (float32) of `shape`."""
    gen = torch.Generator().manual_seed(seed_for("dout", seed, tuple(shape)))
    return torch.randn(*shape, generator=gen).to(device)


def call(fn, x, config, **kw):
    pos = [x[n] for n in NAMES[:8]]
    opt = {n: x[n] for n in NAMES[8:] if n in x}
    return fn(*pos, config, **opt, **kw)


def outputs_and_grads(fn, x, config, dout, **kw):
    """(output, {name: gradient}) of fn on copies of x, backward from dout."""
    leaves = {n: t.clone().requires_grad_() for n, t in x.items()}
    result = call(fn, leaves, config, **kw)
    out = result[0] if isinstance(result, tuple) else result
    out.backward(dout.to(out.dtype))
    return out.detach(), {n: t.grad for n, t in leaves.items()}


def as_float64(x):
    return {n: t.double() for n, t in x.items()}


def assert_close(mine, ref, grads, ref_grads, dtype, seed):
    """Output within tolerance(dtype) and every gradient within the backward tolerance; a
    gradient the reference does not have (k, v when every branch has its own) must be zero."""
    tol, grad_tol = tolerance(dtype), tolerance(dtype, backward=True)
    assert not torch.isnan(mine).any(), f"NaN in output (seed {seed})"
    assert rel_err(mine, ref) <= tol, f"output err {rel_err(mine, ref):.2e} (seed {seed})"
    for name, g in ref_grads.items():
        if g is None:  # unused by the reference (k, v when every branch has its own): zero here
            assert grads[name] is None or not grads[name].any(), f"d{name} should be zero (seed {seed})"
            continue
        assert grads[name] is not None and not torch.isnan(grads[name]).any(), f"d{name} missing/NaN (seed {seed})"
        assert rel_err(grads[name], g) <= grad_tol, f"d{name} err {rel_err(grads[name], g):.2e} (seed {seed})"


def replay_through_interpreter(monkeypatch) -> list[str]:
    """Make kernels/launch_replay.py record launches under the interpreter as it does on a GPU:
    the runner relaunches with the recorded values by position, in signature order, as the
    compiled launcher takes them. Returns the names of the kernels replayed, in order."""
    replayed: list[str] = []

    def runner(fn, grid, args, options):
        fn[grid](**args, **options)

        def relaunch(*values, stream):
            replayed.append(fn.__name__)
            fn[grid](*values, **options)

        return relaunch

    monkeypatch.setattr(launch_replay, "compiled_runner", runner)
    return replayed
