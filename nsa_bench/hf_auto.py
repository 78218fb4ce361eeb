"""Registering nsa-bench's model type (`nsa_bench`, nsa_bench.models.hf_model) with transformers'
Auto classes as soon as both are imported, so that after `import nsa_bench`

    AutoModelForCausalLM.from_pretrained(DIR)

loads a directory `nsa-bench export` wrote for an NSA model, without importing transformers
(seconds) in every nsa-bench process: if transformers is already imported the registration happens
now, else right after its import (a one-shot import hook).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings

TARGET = "transformers"


def register() -> None:
    """Import nsa_bench.models.hf_model, which registers; a failure is a warning, not an import error."""
    try:
        import nsa_bench.models.hf_model  # noqa: F401
    except Exception as error:  # noqa: BLE001 - never break the user's `import transformers`
        warnings.warn(f"nsa-bench: could not register its model type with transformers: {error}", stacklevel=2)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: lets the other finders find transformers, then registers once it has run."""

    def find_spec(self, name, path=None, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                register()

            spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    """Register now if transformers is imported, else once it is (no-op if it is not installed)."""
    if TARGET in sys.modules:
        register()
    elif importlib.util.find_spec(TARGET) is not None and not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
