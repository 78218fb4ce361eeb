"""NSA inside Hugging Face models: tiny random Llama / Qwen2 / Mistral built here (no downloads)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from nsa_bench.lm import CausalLM  # noqa: E402
from nsa_bench.models import hf_nsa, load_lm  # noqa: E402
from nsa_bench.models.adapter import cache_argument  # noqa: E402

COVERING = "8/4/16/8/128"  # selection (8 x 16) and window (128) cover T <= 128
SPARSE = "8/4/16/3/16"
SIZES = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512)


def _configs():
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    return {
        "llama": LlamaConfig(**SIZES),
        "qwen2": Qwen2Config(**SIZES),
        "mistral": MistralConfig(**SIZES, sliding_window=None),
    }


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Each family saved once: {family: directory}, with a small character-level tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<eos>": 1, **{chr(c): i + 2 for i, c in enumerate(range(32, 126))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
    out = {}
    for i, (family, config) in enumerate(_configs().items()):
        torch.manual_seed(i)
        path = tmp_path_factory.mktemp(family)
        AutoModelForCausalLM.from_config(config).save_pretrained(path)
        fast.save_pretrained(path)
        out[family] = path
    return out


def _load(path, attn):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn).eval()


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_nsa_equals_the_models_own_full_attention_when_branches_cover(checkpoints, family):
    full, nsa = _load(checkpoints[family], "sdpa"), _load(checkpoints[family], "nsa")
    assert nsa.config._attn_implementation == "nsa"
    ids = torch.randint(0, 96, (2, 100), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = full(ids).logits
        for gates in [(0.0, 0.5, 0.5), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]:
            hf_nsa.set_model_nsa(nsa, config=COVERING, gates=gates)
            torch.testing.assert_close(nsa(ids).logits, want, atol=2e-5, rtol=1e-4)
        hf_nsa.set_model_nsa(nsa, config=SPARSE)  # sparse at T=100: not full attention any more
        assert (nsa(ids).logits - want).abs().max() > 1e-3


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_cached_decoding_matches_the_full_forward(checkpoints, family):
    nsa = _load(checkpoints[family], "nsa")
    hf_nsa.set_model_nsa(nsa, config=SPARSE, gates=(0.2, 0.5, 0.3))
    ids = torch.randint(0, 96, (1, 90), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = nsa(ids).logits
        first = nsa(ids[:, :60], use_cache=True)
        cache = cache_argument(nsa)
        nxt = nsa(ids[:, 60:61], use_cache=True, **{cache: first[cache]})
    torch.testing.assert_close(first.logits, whole[:, :60], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(nxt.logits[:, 0], whole[:, 60], atol=1e-5, rtol=1e-4)


def test_defaults_are_configurable(checkpoints):
    model = _load(checkpoints["llama"], "nsa")
    attn = model.model.layers[0].self_attn
    saved = dict(hf_nsa._defaults)
    try:
        hf_nsa.configure(config="16/8/32/4/64", gates=(0.1, 0.2, 0.3))
        s = hf_nsa.model_settings(attn)
        assert str(s["config"]) == "16/8/32/4/64" and s["gates"] == (0.1, 0.2, 0.3)
        hf_nsa.set_model_nsa(model, gates=(1, 0, 0))  # one model's own settings win over the defaults
        assert hf_nsa.model_settings(attn)["gates"] == (1.0, 0.0, 0.0)
        with pytest.raises(ValueError):
            hf_nsa.configure(gates=(1, 2))
    finally:
        hf_nsa._defaults.update(saved)


def test_load_lm_runs_a_hugging_face_directory_with_either_attention(checkpoints):
    path = str(checkpoints["qwen2"])
    full = load_lm(path, attention="full", device="cpu")
    nsa = load_lm(path, attention="nsa", device="cpu", nsa_config=COVERING)
    assert isinstance(nsa, CausalLM) and (nsa.attention, full.attention) == ("nsa", "full")
    assert nsa.max_length == 512 and nsa.name == path
    ids = nsa.encode("thequickbrownfox")  # no spaces: transformers 5 swaps in its Qwen2 pre-tokenizer
    assert nsa.decode(ids) == "thequickbrownfox" and len(ids) == 16
    x = torch.tensor([ids])
    torch.testing.assert_close(nsa.logits(x), full.logits(x), atol=2e-5, rtol=1e-4)
    new = nsa.generate(ids, 8)
    with torch.no_grad():
        again = nsa.logits(torch.tensor([ids + new]))[0]
    assert again[len(ids) - 1 : -1].argmax(-1).tolist()[: len(new)] == new
