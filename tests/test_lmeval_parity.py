"""The nsa-bench lm-eval class against lm-eval's own `hf` model (HFLM) on one tiny random Llama:
every request type, a tokenizer that adds BOS (as Llama's) and one that does not, the add_bos_token
argument, and the requests lm-eval refuses. Log-likelihoods agree within 1e-4 (float32, CPU),
greedy generations are equal, and what HFLM refuses ours refuses with a ValueError."""

from __future__ import annotations

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("accelerate")  # lm-eval's HFLM needs it
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from tiny_hf import write_tiny_llama  # noqa: E402

from nsa_bench.suites.lmeval_model import NSABenchLM  # noqa: E402

MAX_LENGTH = 64
LONG = "the cat sat on the mat. " * 12  # beyond MAX_LENGTH tokens: cut from the left / rolling windows
PAIRS = [
    ("the cat sat on the", " mat."),
    ("Question: what is two plus two?\nAnswer: ", "four"),  # the trailing space moves to the continuation
    ("", "hello world"),  # empty context: BOS (this tokenizer's prefix) stands in
    ("  ", " hello"),  # whitespace only: a context only where the tokenizer adds BOS
    ("hello", " world, hello there. a dog ran in the park!"),
    (LONG, " a dog ran"),
]
REFUSED = [
    ("the abc", "d"),  # "abcd" is one token: the continuation merges into the context's last token
    ("abc", "d"),  # context and continuation are one token
    ("hello", ""),  # nothing to score
    ("", ""),
]
DOCUMENTS = ["hello world, hello there.", LONG + "numbers 12 345 6789", "<s>the cat"]
GENERATIONS = [
    ("the cat sat", {"until": ["."], "max_gen_toks": 12}),
    ("Question: what is two plus two?\nAnswer:", {"until": ["\n", "Question:"], "max_gen_toks": 8}),
    (LONG, {"until": [], "max_gen_toks": 10}),  # the prompt is cut from the left to fit
    ("<s>hello", {"until": "world", "max_new_tokens": 6}),  # a prompt that starts with BOS gets no second
]


def request(kind: str, *args) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=tuple(args), idx=0)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-llama")
    return {bos: str(write_tiny_llama(root / f"bos-{bos}", bos=bos, max_length=MAX_LENGTH)) for bos in (True, False)}


# (tokenizer adds BOS, add_bos_token model argument)
SETTINGS = [(True, None), (False, None), (True, False), (False, True)]


@pytest.fixture(scope="module", params=SETTINGS, ids=lambda s: f"bos={s[0]}-add_bos_token={s[1]}")
def pair(request, checkpoints):
    bos, add_bos = request.param
    extra = {} if add_bos is None else {"add_bos_token": add_bos}
    theirs = HFLM(pretrained=checkpoints[bos], device="cpu", dtype="float32", **extra)
    ours = NSABenchLM(pretrained=checkpoints[bos], attention="full", device="cpu", progress=False,
                      **({} if add_bos is None else {"add_bos_token": str(add_bos)}))  # as lm-eval's CLI hands it
    return theirs, ours


def test_loglikelihood_matches_hflm(pair):
    theirs, ours = pair
    reqs = [request("loglikelihood", c, x) for c, x in PAIRS]
    want = []
    for req in reqs:  # HFLM refuses "  " where no BOS is added: so must we
        try:
            want.append(theirs.loglikelihood([req], disable_tqdm=True)[0])
        except AssertionError:
            with pytest.raises(ValueError, match="has no token"):
                ours.loglikelihood([req])
            want.append(None)
    got = ours.loglikelihood([r for r, w in zip(reqs, want) if w is not None])
    want = [w for w in want if w is not None]
    assert len(want) >= len(PAIRS) - 1
    for (logprob, greedy), (want_logprob, want_greedy) in zip(got, want):
        assert logprob == pytest.approx(want_logprob, abs=1e-4)
        assert greedy == want_greedy


@pytest.mark.parametrize("context, continuation", REFUSED)
def test_refuses_what_hflm_refuses(pair, context, continuation):
    theirs, ours = pair
    req = request("loglikelihood", context, continuation)
    with pytest.raises((AssertionError, IndexError)):
        theirs.loglikelihood([req], disable_tqdm=True)
    with pytest.raises(ValueError, match="adds no token|has no token"):
        ours.loglikelihood([req])


def test_loglikelihood_rolling_matches_hflm(pair):
    theirs, ours = pair
    reqs = [request("loglikelihood_rolling", text) for text in DOCUMENTS]
    want = theirs.loglikelihood_rolling(reqs, disable_tqdm=True)
    assert ours.loglikelihood_rolling(reqs) == pytest.approx(want, abs=1e-4)


def test_generate_until_matches_hflm(pair):
    theirs, ours = pair
    reqs = [request("generate_until", context, kwargs) for context, kwargs in GENERATIONS]
    want = theirs.generate_until(reqs, disable_tqdm=True)
    assert ours.generate_until(reqs) == want
    assert any(text for text in want)
    too_long = [request("generate_until", "hello", {"until": ["."], "max_gen_toks": MAX_LENGTH})]
    with pytest.raises(AssertionError):
        theirs.generate_until(too_long, disable_tqdm=True)
    with pytest.raises(ValueError, match="no room for a prompt"):
        ours.generate_until(too_long)


def test_bad_add_bos_token_is_refused(checkpoints):
    with pytest.raises(ValueError, match="add_bos_token must be true or false"):
        NSABenchLM(pretrained=checkpoints[True], attention="full", device="cpu", add_bos_token="maybe")


def test_context_length_is_read_as_lm_eval_reads_it():
    from types import SimpleNamespace as Config

    from lm_eval.models.utils import resolve_max_length

    from nsa_bench.models.adapter import context_length

    tokenizer_unset, tokenizer_512 = Config(model_max_length=int(1e30)), Config(model_max_length=512)
    for config, tokenizer in [
        (Config(n_positions=1024, max_position_embeddings=4096), tokenizer_unset),  # GPT-2 style first
        (Config(max_position_embeddings=4096), tokenizer_512),
        (Config(text_config=Config(max_position_embeddings=32768), max_position_embeddings=1200), tokenizer_unset),
        (Config(), tokenizer_512),
        (Config(), tokenizer_unset),
    ]:
        assert context_length(config, tokenizer) == resolve_max_length(config, tokenizer)
