"""scripts/sass_loop.py finds a kernel's main loop in SASS; compile_kernels.py --set rejects bad items."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from sass_loop import main_loop  # noqa: E402

SASS = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/               @P0 BRA 0x40 ;
        /*0020*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ;
        /*0030*/                   FMUL R2, R2, R3 ;
        /*0040*/                   HMMA.16816.F32.BF16 R4, R8, R14, R4 ;
        /*0050*/              @!P1 BRA 0x20 ;
        /*0060*/               @P2 BRA 0x50 ;
        /*0070*/                   EXIT ;
"""


def test_the_widest_backward_branch_is_the_loop():
    start, end, ops = main_loop(SASS)
    assert (start, end) == (0x20, 0x50)
    assert ops == {"HMMA": 2, "FMUL": 1, "BRA": 1}


def test_no_loop_is_an_error():
    with pytest.raises(ValueError, match="no loop"):
        main_loop("        /*0000*/                   EXIT ;\n")


@pytest.mark.parametrize("item", ["slc_fwd.bogus=3", "slc_fwd.keys=abc", "nostage.keys=32"])
def test_compile_kernels_rejects_a_bad_set_in_one_line(item, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "compile_kernels.py"), "--out",
                           str(tmp_path / "c.csv"), "--set", item], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "expected STAGE.KEY=VALUE" in proc.stderr
    assert not (tmp_path / "c.csv").exists()
