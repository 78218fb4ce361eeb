"""scripts/gpu_l2_read_bandwidth.py: its tile-reading kernel sums exactly the tiles it is given."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import gpu_l2_read_bandwidth as l2  # noqa: E402

pytestmark = pytest.mark.triton


@pytest.mark.parametrize("tma", [True, False], ids=["tma", "gather"])
def test_read_tiles_sums_the_chosen_tiles(tma):
    gen = torch.Generator().manual_seed(3)
    src = torch.randn(8 * l2.ROWS, l2.COLS, generator=gen).to(torch.float16)
    idx = torch.randint(0, 8, (5, 3), generator=gen, dtype=torch.int32)
    tiles = src.view(8, l2.ROWS, l2.COLS).float()
    want = torch.stack([tiles[i.long()].sum() for i in idx])
    torch.testing.assert_close(l2.read_tiles(src, idx, tma, warps=1), want, rtol=1e-5, atol=1e-3)
