"""The small things every command shares, in one version: sizes, devices, row statuses, figures."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from nsa_bench.environment import resolve_device
from nsa_bench.errors import UsageError
from nsa_bench.flops import parse_size
from nsa_bench.plots import decode_figure, heatmap_figure, save, speedup_figure, stage_figure, train_figure
from nsa_bench.results import Unsupported, status_of
from nsa_bench.suites import needle as nd

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("text,value", [("1.5k", 1536), ("8.5k", 8704), ("0.5m", 1 << 19), ("4096", 4096)])
def test_one_size_rule_for_kernels_and_needle(text, value):
    assert parse_size(text) == value and nd.parse_size(text) == value
    assert nd.parse_ctx(f"{text},{text}") == [value]


def test_a_bad_context_length_is_a_usage_error_naming_it():
    with pytest.raises(UsageError, match=r"bad context length: bad size '1\.3k'"):
        nd.parse_ctx("8k,1.3k")


def test_devices_resolve_one_way(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu") == resolve_device("auto") == resolve_device("cpu")
    for asked in ("cuda", "cuda:1", torch.device("cuda")):
        with pytest.raises(UsageError, match="no CUDA GPU here"):
            resolve_device(asked)
    with pytest.raises(UsageError, match="bad device 'gpu'"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("cuda") and resolve_device("cuda:1") == torch.device("cuda:1")


def test_lmeval_model_refuses_cuda_without_a_gpu(monkeypatch):
    pytest.importorskip("lm_eval")
    from nsa_bench.suites.lmeval_model import NSABenchLM

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="no CUDA GPU here"):
        NSABenchLM(pretrained="tiny", attention="full", device="cuda", progress=False)


class OutOfResources(Exception):  # Triton's name for a launch that does not fit the device
    pass


@pytest.mark.parametrize("error,status", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB\nmore"), "oom"),
    (RuntimeError("CUDA error: out of memory"), "oom"),
    (Unsupported("the reference has no decode step"), "unsupported: the reference has no decode step"),
    (ValueError("dk must be <= 256"), "unsupported: ValueError: dk must be <= 256"),
    (OutOfResources("shared memory"), "unsupported: OutOfResources: shared memory"),
    (RuntimeError("boom\nsecond line"), "error: RuntimeError: boom"),
    (KeyError(), "error: KeyError: KeyError"),
])
def test_status_of_an_exception(error, status):
    assert status_of(error) == status


def _kernel_rows():
    rows = []
    for t in (1024, 2048):
        for mode in ("fwd", "bwd", "decode"):
            rows += [dict(impl="fa2", mode=mode, seq_len=t, status="ok", ms=2.0 * t / 1024, speedup_fa2=1.0,
                          gbps=100.0, copy_gbps=500.0, ceiling=math.nan),
                     dict(impl="nsa", mode=mode, seq_len=t, status="ok", ms=1.0, speedup_fa2=2.0 * t / 1024,
                          speedup_cudnn=1.5, gbps=80.0, copy_gbps=500.0, ceiling=3.0 * t / 1024)]
        rows += [dict(impl=f"nsa:{s}", mode="fwd", seq_len=t, status="ok", ms=0.5) for s in ("select", "slc_attn")]
    return pd.DataFrame(rows)


def test_each_kernel_figure_is_drawn_from_rows(tmp_path):
    rows = _kernel_rows()
    for name, figure in (("speedup", speedup_figure), ("stages", stage_figure), ("decode", decode_figure)):
        path = save(figure(rows), tmp_path / f"{name}.png")
        assert path.read_bytes()[:8] == PNG
    no_stages = rows[~rows["impl"].str.startswith("nsa:")]
    assert stage_figure(no_stages) is None and decode_figure(rows[rows["mode"] != "decode"]) is None
    assert speedup_figure(rows.iloc[0:0]) is None


def test_heatmap_and_training_figures(tmp_path):
    grid = pd.DataFrame([[1.0, float("nan")], [0.0, 0.5]], index=[0.0, 1.0], columns=[1024, 2048])
    assert save(heatmap_figure([("nsa", grid, "viridis", 0.0), ("nsa − full", grid - 0.5, "RdBu", -1.0)]),
                tmp_path / "h.png").read_bytes()[:8] == PNG
    assert heatmap_figure([]) is None
    train = pd.DataFrame([dict(attention=a, step=s, loss=5.0 / s, wall_s=0.1 * s, status="ok",
                               val_loss=(4.0 / s if s % 5 == 0 else math.nan), tokens_per_s=1000.0)
                          for a in ("nsa", "full") for s in range(1, 21)])
    assert save(train_figure(train), tmp_path / "t.png").read_bytes()[:8] == PNG
    assert train_figure(train.assign(status="oom")) is None


_WITHOUT_TRITON = """
import sys
sys.modules["triton"] = None  # `import triton` raises ImportError, as on a machine without Triton
import torch
import nsa_bench.kernels as kernels
from nsa_bench.kernels import NSAConfig, mean_pool_compress, nsa_attention_ref
from nsa_bench.models import Transformer, preset
from nsa_bench.models.nsa_backend import nsa_function

c = NSAConfig.parse("8/4/16/4/32")
q, k, v = torch.randn(1, 40, 2, 8), torch.randn(1, 40, 1, 8), torch.randn(1, 40, 1, 8)
g = torch.full((1, 40, 2), 1 / 3)
assert nsa_attention_ref(q, k, v, mean_pool_compress(k, c), mean_pool_compress(v, c), g, g, g, c).shape == q.shape
assert nsa_function(torch.device("cpu")) is nsa_attention_ref
try:
    kernels.nsa_attention
    raise SystemExit("nsa_attention imported without Triton")
except ImportError:
    pass
model = Transformer(preset("tiny", attention="nsa"))  # the reference serves the model, decode included
assert model(torch.randint(0, 100, (1, 48))).shape[:2] == (1, 48) and len(model.generate(list(range(1, 9)), 3)) == 3
print("ok")
"""


def _python(code: str):
    """Run code in a fresh interpreter without TRITON_INTERPRET (under it, kernels/triton_common.py
    patches Triton's interpreter as soon as it is imported)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)


def test_the_reference_and_models_run_without_triton():
    """`import nsa_bench.kernels` imports Triton only when a kernel is first asked for."""
    proc = _python(_WITHOUT_TRITON)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_importing_the_kernels_package_leaves_triton_unimported():
    proc = _python("import sys, nsa_bench.kernels, nsa_bench.cli; print('triton' in sys.modules)")
    assert proc.stdout.strip() == "False", proc.stderr[-2000:]
