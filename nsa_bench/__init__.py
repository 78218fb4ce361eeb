"""nsa-bench: what Native Sparse Attention buys over full attention, measured."""

__version__ = "0.1.0"

from nsa_bench import hf_auto  # noqa: E402

hf_auto.install()  # exported NSA models load with transformers' AutoModelForCausalLM (see hf_auto)
