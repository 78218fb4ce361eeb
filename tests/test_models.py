"""Our decoder: NSA equals full attention where its branches cover the context, the KV cache, generate,
checkpoints, the byte tokenizer and load_lm."""

import pytest
import torch

from nsa_bench.errors import UsageError
from nsa_bench.kernels import nsa_attention_ref
from nsa_bench.lm import CausalLM
from nsa_bench.models import ByteTokenizer, Transformer, load_lm, preset, save_checkpoint
from nsa_bench.models.nsa_backend import nsa_function
from nsa_cases import replay_through_interpreter

COVERING = "8/4/16/8/128"  # slc_count * slc_block = 128 and window 128 cover T <= 128


def _full_twin(nsa_model: Transformer) -> Transformer:
    """A full-attention model with the NSA model's weights (the slc branch's k/v as its k/v)."""
    cfg = nsa_model.cfg
    full = Transformer(cfg.with_(attention="full"))
    state = {k: v for k, v in nsa_model.state_dict().items() if ".compress_" not in k and ".gate." not in k}
    kv = cfg.n_kv_heads * cfg.head_dim
    slc = 0 if cfg.nsa_shared_kv else 1
    for i in range(cfg.n_layers):
        for w in ("wk", "wv"):
            state[f"blocks.{i}.attn.{w}.weight"] = state[f"blocks.{i}.attn.{w}.weight"][slc * kv : (slc + 1) * kv]
    full.load_state_dict(state)
    return full.eval()


def _gates_slc_win_half(model: Transformer) -> None:
    """Gates g_cmp = 0, g_slc = g_win = 0.5 exactly (zero weights, biases -1e4 / 0 / 0)."""
    for block in model.blocks:
        last = block.attn.gate[2]
        torch.nn.init.zeros_(last.weight)
        bias = torch.zeros(3, model.cfg.n_heads)
        bias[0] = -1e4
        last.bias.data.copy_(bias.flatten())


def _same_branch_kv(model: Transformer) -> None:
    """Give the window branch the selection branch's k/v projections."""
    kv = model.cfg.n_kv_heads * model.cfg.head_dim
    for block in model.blocks:
        for w in (block.attn.wk.weight, block.attn.wv.weight):
            w.data[2 * kv : 3 * kv] = w.data[kv : 2 * kv]


@pytest.mark.parametrize("shared_kv", [True, False])
def test_nsa_model_equals_full_attention_when_branches_cover_the_context(shared_kv):
    torch.manual_seed(0)
    nsa = Transformer(preset("tiny", nsa=COVERING, nsa_shared_kv=shared_kv)).eval()
    _gates_slc_win_half(nsa)
    if not shared_kv:
        _same_branch_kv(nsa)
    full = _full_twin(nsa)
    ids = torch.randint(0, 256, (2, 100))
    with torch.no_grad():
        torch.testing.assert_close(nsa(ids), full(ids), atol=2e-5, rtol=1e-4)
        # at a context longer than the branches cover, NSA is sparse and differs
        long_ids = torch.randint(0, 256, (1, 256))
        assert (nsa(long_ids) - full(long_ids)).abs().max() > 1e-3


@pytest.mark.parametrize("attention", ["full", "nsa"])
def test_kv_cache_matches_full_forward(attention):
    torch.manual_seed(1)
    model = Transformer(preset("tiny", attention=attention)).eval()  # NSA 8/4/16/4/32: sparse at T=120
    ids = torch.randint(0, 256, (2, 120))
    with torch.no_grad():
        whole = model(ids)
        cache = model.new_cache()
        parts = [model(ids[:, :70], cache), model(ids[:, 70:71], cache), model(ids[:, 71:], cache)]
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-4, rtol=1e-4)


@pytest.mark.triton
@pytest.mark.slow
@pytest.mark.parametrize("replay", [False, True], ids=["dispatch", "replay"])
def test_decode_kernels_match_the_full_forward(replay, monkeypatch):
    """The NSA cache on nsa_bench.kernels.NSACache / nsa_decode (Triton; the interpreter on CPU);
    with replay, later steps replay the first step's launches as they do on a GPU."""
    replayed = replay_through_interpreter(monkeypatch) if replay else []
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(4)
    model = Transformer(preset("tiny")).eval().to(device)  # NSA 8/4/16/4/32, separate branch k/v
    for block in model.blocks:  # gates and compression away from their zero-start values
        for layer in (block.attn.gate[2], block.attn.compress_k.fc2, block.attn.compress_v.fc2):
            torch.nn.init.normal_(layer.weight, std=0.2)
    ids = torch.randint(0, 256, (1, 71), device=device)  # 66 > n*l' = 64 and > w = 32: sparse
    with torch.no_grad():
        whole = model(ids)
        cache = model.new_cache(max_len=71, decode_kernels=True)
        steps = [model(ids[:, :66], cache)] + [model(ids[:, i : i + 1], cache) for i in range(66, 71)]
    torch.testing.assert_close(torch.cat(steps, 1), whole, atol=1e-4, rtol=1e-4)
    layers = model.cfg.n_layers
    assert replayed.count("_decode_cmp_win_kernel") == (4 * layers if replay else 0)  # steps 2..5 of each layer


@pytest.mark.parametrize("attention", ["full", "nsa"])
def test_generate_is_argmax_of_recomputed_logits(attention):
    torch.manual_seed(2)
    model = Transformer(preset("tiny", attention=attention)).eval()
    prompt = list(range(40, 80))
    new = model.generate(prompt, 12)
    assert len(new) == 12
    seq = prompt + new
    with torch.no_grad():
        logits = model(torch.tensor([seq]))[0]
    assert logits[len(prompt) - 1 : -1].argmax(-1).tolist() == new
    # top-1 sampling is greedy; sampling with a seeded generator repeats itself
    assert model.generate(prompt, 12, temperature=0.7, top_k=1) == new
    draws = [model.generate(prompt, 12, temperature=1.0, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert draws[0] == draws[1]


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(3)
    lm = load_lm("tiny", attention="nsa", device="cpu")
    save_checkpoint(lm.model, tmp_path / "ckpt")
    again = load_lm(str(tmp_path / "ckpt"))
    assert again.model.cfg == lm.model.cfg and again.attention == "nsa"
    ids = torch.tensor([lm.encode("checkpoints keep every weight")])
    assert torch.equal(again.logits(ids), lm.logits(ids))
    with pytest.raises(UsageError, match="trained with nsa"):
        load_lm(str(tmp_path / "ckpt"), attention="full")
    # an NSA config override applies to the loaded model
    assert load_lm(str(tmp_path / "ckpt"), nsa_config="8/4/16/8/64").model.cfg.nsa == "8/4/16/8/64"


def test_load_lm_is_a_causal_lm_and_stops_at_stop_strings():
    lm = load_lm("tiny", attention="full", device="cpu")
    assert isinstance(lm, CausalLM)
    assert (lm.name, lm.attention, lm.max_length, lm.device.type) == ("tiny", "full", 256, "cpu")
    ids = lm.encode("abc")
    free = lm.generate(ids, 10)
    stop = lm.decode(free[:3])[-1]  # a character the greedy continuation produces by its third token
    stopped = lm.generate(ids, 10, stop=[stop])
    assert stop in lm.decode(stopped) and len(stopped) <= 3 and stopped == free[: len(stopped)]
    assert lm.logits(torch.tensor([ids, ids])).shape == (2, 3, lm.model.cfg.vocab_size)


def test_load_lm_rejects_bad_input(tmp_path):
    with pytest.raises(UsageError, match="neither a preset"):
        load_lm(str(tmp_path / "nothing"))
    with pytest.raises(UsageError, match="attention must be"):
        load_lm("tiny", attention="sparse")


def test_byte_tokenizer_round_trip():
    tok = ByteTokenizer()
    text = "naïve — ÆSIR 数字 ✓"
    ids = tok.encode(text)
    assert max(ids) < 256 and tok.decode(ids) == text
    assert tok.decode(ids + [tok.eos_id, tok.pad_id]) == text


def test_reference_backend_on_cpu():
    assert nsa_function(torch.device("cpu")) is nsa_attention_ref
    assert nsa_function(torch.device("cpu"), "reference") is nsa_attention_ref
    with pytest.raises(ValueError):
        nsa_function(torch.device("cpu"), "fast")
