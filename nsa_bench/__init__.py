"""nsa-bench: what Native Sparse Attention buys over full attention, measured."""

__version__ = "0.1.0"
