"""Our Transformer (NSA or full attention) as a transformers model, registered with the Auto classes.

Importing this module registers model type `nsa_bench` (`import nsa_bench` arranges that, see
nsa_bench.hf_auto), after which

    AutoModelForCausalLM.from_pretrained(DIR)

loads a directory written by nsa_bench.models.hf_export (config.json with model_type nsa_bench,
model.safetensors), and lm-eval's `hf` model evaluates it. The forward pass is our own model's:
no KV cache (generation recomputes the whole prefix each step), and inputs must be unpadded (the
attention mask may only hold ones).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

try:  # transformers >= 5
    from transformers import PreTrainedConfig
except ImportError:  # transformers 4.x
    from transformers import PretrainedConfig as PreTrainedConfig

from .config import ModelConfig
from .model import Transformer

MODEL_TYPE = "nsa_bench"


class NSABenchConfig(PreTrainedConfig):
    """A transformers config holding our ModelConfig's fields (`model`), with the standard size names."""

    model_type = MODEL_TYPE

    def __init__(self, model: dict | None = None, nsa_impl: str = "auto", **kwargs):
        cfg = ModelConfig.from_dict(model or {})
        self.model = cfg.to_dict()
        self.nsa_impl = nsa_impl
        self.vocab_size = cfg.vocab_size
        self.hidden_size = cfg.dim
        self.num_hidden_layers = cfg.n_layers
        self.num_attention_heads = cfg.n_heads
        self.max_position_embeddings = cfg.max_seq_len
        kwargs["tie_word_embeddings"] = True
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings"):
            kwargs.pop(name, None)  # derived from `model`, as saved by to_dict
        super().__init__(**kwargs)


class NSABenchForCausalLM(PreTrainedModel, GenerationMixin):
    """nsa_bench.models.Transformer under `model`; logits equal to it (float32)."""

    config_class = NSABenchConfig
    base_model_prefix = "model"
    _tied_weights_keys = {"model.head.weight": "model.embed.weight"}

    def __init__(self, config: NSABenchConfig):
        super().__init__(config)
        self.model = Transformer(ModelConfig.from_dict(config.model), nsa_impl=config.nsa_impl)
        self.post_init()

    def _init_weights(self, module) -> None:
        """Keep the Transformer's own initialisation (loading replaces it anyway)."""

    def get_input_embeddings(self):
        return self.model.embed

    def get_output_embeddings(self):
        return self.model.head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs) -> CausalLMOutputWithPast:
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("nsa_bench models take unpadded inputs only (the attention mask holds zeros)")
        logits = self.model(input_ids)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids: torch.Tensor, attention_mask=None, **kwargs) -> dict:
        """The whole sequence every step (no KV cache)."""
        return {"input_ids": input_ids, "attention_mask": attention_mask}


def register() -> None:
    """Register the config and model with transformers' Auto classes (once)."""
    try:
        AutoConfig.register(MODEL_TYPE, NSABenchConfig)
        AutoModelForCausalLM.register(NSABenchConfig, NSABenchForCausalLM)
    except ValueError:  # already registered
        pass


register()
