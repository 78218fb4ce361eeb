"""The CLI skeleton: version, env, and one-line usage errors with exit code 2."""

import subprocess
import sys

import pytest

from nsa_bench import __version__
from nsa_bench.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"nsa-bench {__version__}"


def test_env_tells_the_truth_on_this_machine(capsys):
    import torch

    assert main(["env"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.strip().splitlines())
    assert lines["torch"] == torch.__version__
    assert lines["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    for key in ("gpu", "triton", "flash_attn", "lm_eval", "transformers", "cudnn_attention", "fa2_baseline", "git_rev"):
        assert key in lines
    if not torch.cuda.is_available():
        assert lines["fa2_baseline"] == "none (no CUDA GPU)"
        assert lines["cudnn_attention"] == "False"


@pytest.mark.parametrize("argv", [["--bogus"], ["env", "--nope"], ["no-such-command"]])
def test_usage_errors_are_one_line_and_exit_2(argv):
    proc = subprocess.run([sys.executable, "-m", "nsa_bench.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("nsa-bench: error:")
    assert "Traceback" not in proc.stderr
