"""Run the CLI under torchrun with 2 CPU processes (gloo), as the multi-process tests do."""

import os
import subprocess
import sys


def torchrun(*args: str, expect_ok: bool = True, module: str = "nsa_bench.cli") -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` in 2 processes; --standalone takes a free port; killed after 5 minutes.
    With expect_ok, a non-zero exit fails the test, showing the output's end."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", module, *args]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    if expect_ok:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done
