"""LongBench's metrics, written for this project after LongBench's metrics.py and eval.py.

Every metric maps (prediction, reference) to a score in [0, 1]; `score_prediction` takes the
maximum over an example's references, after LongBench's first-line rule for the few-shot tasks.

Differences from LongBench's code (also in the README):
- ROUGE-L is this module's own implementation of what the `rouge` package (which LongBench calls)
  computes: summary-level union-LCS over sentences split at '.', counting distinct words. That is
  not the textbook sentence-level LCS F-measure, but it reproduces LongBench's numbers.
- Code similarity is the indel ratio 2*LCS/(len(a)+len(b)) over characters, rounded to whole
  percents (1 for two empty strings): what `fuzz.ratio` computes with python-Levenshtein installed.
  LongBench's requirements install fuzzywuzzy without it, and then `fuzz.ratio` falls back to
  difflib's SequenceMatcher, whose matching blocks can find fewer matches than the LCS (and which
  treats characters frequent in a 200+ character reference as junk): `code_sim="difflib"`
  (metric `code_sim_difflib`) scores that way.
- Classification counts a class as predicted when its name occurs in the prediction, drops those
  that are proper substrings of the reference and scores 1/(number left) if the reference is among
  them. LongBench's code means the same (its difflib fallback is unreachable), but it removes from
  the list it iterates, so of two adjacent such substrings it keeps the second; here both go.
- Chinese tokens come from jieba when it is installed (as in LongBench); without jieba each CJK
  character is a token and runs of other letters/digits are tokens. `ZH_TOKENIZER` says which.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from difflib import SequenceMatcher
from typing import Callable, Sequence

from nsa_bench.suites.longbench.datasets import spec_for

_ZH_PUNCTUATION = (
    "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏."
)
_EN_PUNCTUATION = frozenset(string.punctuation)
_ALL_PUNCTUATION = frozenset(string.punctuation + _ZH_PUNCTUATION)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# One CJK character, or a run of other letters/digits, or any other single non-space character.
_CHAR_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|\S")


def _jieba():
    try:
        import jieba
    except ImportError:
        return None
    jieba.setLogLevel(60)  # no "Building prefix dict" chatter on stderr
    return jieba


ZH_TOKENIZER = "jieba" if _jieba() is not None else "char"


def zh_tokens(text: str, tokenizer: str | None = None) -> list[str]:
    """Chinese word tokens: jieba's (accurate mode) or the character-level fallback."""
    tokenizer = tokenizer or ZH_TOKENIZER
    if tokenizer == "jieba":
        return list(_jieba().cut(text, cut_all=False))
    if tokenizer == "char":
        return _CHAR_TOKEN.findall(text)
    raise ValueError(f"unknown Chinese tokenizer {tokenizer!r} (jieba or char)")


def normalize_en(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _EN_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def normalize_zh(text: str) -> str:
    """Lower case, no English or Chinese punctuation, no whitespace."""
    return "".join(ch for ch in text.lower() if ch not in _ALL_PUNCTUATION and not ch.isspace())


def token_f1(prediction: Sequence[str], reference: Sequence[str]) -> float:
    """F1 of the multiset overlap of two token lists."""
    same = sum((Counter(prediction) & Counter(reference)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction), same / len(reference)
    return 2 * precision * recall / (precision + recall)


def qa_f1(prediction: str, reference: str, **_) -> float:
    """English QA F1 over normalised words."""
    return token_f1(normalize_en(prediction).split(), normalize_en(reference).split())


def qa_f1_zh(prediction: str, reference: str, *, tokenizer: str | None = None, **_) -> float:
    """Chinese QA F1 over word tokens, each normalised, empty ones dropped."""

    def tokens(text: str) -> list[str]:
        return [t for t in (normalize_zh(t) for t in zh_tokens(text, tokenizer)) if t]

    return token_f1(tokens(prediction), tokens(reference))


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of two sequences (bit-parallel, Hyyro 2004)."""
    if not a or not b:
        return 0
    masks: dict = {}
    for i, item in enumerate(b):
        masks[item] = masks.get(item, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for item in a:
        u = v & masks.get(item, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - bin(v).count("1")


def _sentences(text: str) -> list[list[str]]:
    # The `rouge` package's reading of a text: pieces between '.', each a list of space-separated words.
    return [" ".join(piece.split()).split(" ") for piece in text.split(".") if piece]


def _lcs_words(x: Sequence[str], y: Sequence[str]) -> set[str]:
    """The words of one longest common subsequence of x and y, traced back as the `rouge` package does."""
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i, a in enumerate(x, 1):
        row, above = table[i], table[i - 1]
        for j, b in enumerate(y, 1):
            row[j] = above[j - 1] + 1 if a == b else max(above[j], row[j - 1])
    words, i, j = set(), len(x), len(y)
    while i and j:
        if x[i - 1] == y[j - 1]:
            words.add(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words


def rouge_l_summary(prediction: str, reference: str) -> float:
    """Summary-level ROUGE-L F-measure as the `rouge` package (1.0.1) computes it.

    Both texts are split into sentences at '.'; for each reference sentence the words of its LCS
    with every predicted sentence join a running union, and the union's growth is the LCS credit.
    Lengths and unions count distinct words (the package's sets); F adds 1e-8 to its denominator.
    """
    hyp, ref = _sentences(prediction), _sentences(reference)
    if not hyp or not ref:
        return 0.0  # the package raises here and LongBench scores 0
    union: set[str] = set()
    for ref_words in ref:
        for hyp_words in hyp:
            union |= _lcs_words(ref_words, hyp_words)
    hits = len(union)
    recall = hits / len({w for words in ref for w in words})
    precision = hits / len({w for words in hyp for w in words})
    return 2 * precision * recall / (precision + recall + 1e-8)


def rouge_l(prediction: str, reference: str, **_) -> float:
    """English ROUGE-L (LongBench: the `rouge` package on the raw texts, case kept)."""
    return rouge_l_summary(prediction, reference)


def rouge_l_zh(prediction: str, reference: str, *, tokenizer: str | None = None, **_) -> float:
    """Chinese ROUGE-L: the same over space-joined word tokens."""
    return rouge_l_summary(" ".join(zh_tokens(prediction, tokenizer)), " ".join(zh_tokens(reference, tokenizer)))


def classification(prediction: str, reference: str, *, all_classes: Sequence[str] = (), **_) -> float:
    """1/k when the reference class is among the k class names found in the prediction, else 0.

    Class names that are proper substrings of the reference do not count as found.
    """
    found = [c for c in all_classes if c in prediction]
    found = [c for c in found if c == reference or c not in reference]
    return 1.0 / len(found) if reference in found else 0.0


def _number_share(prediction: str, target: str) -> float:
    numbers = re.findall(r"\d+", prediction)
    return sum(n == target for n in numbers) / len(numbers) if numbers else 0.0


def count(prediction: str, reference: str, **_) -> float:
    """Share of the numbers in the prediction that equal the reference count."""
    return _number_share(prediction, str(reference))


def _retrieval(pattern: str, prediction: str, reference: str) -> float:
    match = re.search(pattern, reference)
    if match is None:
        raise ValueError(f"retrieval answer {reference!r} does not match {pattern!r}")
    return _number_share(prediction, match.group(1))


def retrieval(prediction: str, reference: str, **_) -> float:
    """Share of the numbers in the prediction that equal N of the reference 'Paragraph N'."""
    return _retrieval(r"Paragraph (\d+)", prediction, reference)


def retrieval_zh(prediction: str, reference: str, **_) -> float:
    """Share of the numbers in the prediction that equal N of the reference '段落N'."""
    return _retrieval(r"段落(\d+)", prediction, reference)


def first_code_line(prediction: str) -> str:
    """The first line of a completion that has no '`', '#' or '//' (LongBench's choice), else ''."""
    for line in prediction.lstrip("\n").split("\n"):
        if "`" not in line and "#" not in line and "//" not in line:
            return line
    return ""


def code_sim(prediction: str, reference: str, **_) -> float:
    """Edit similarity of the first code line to the reference: 2*LCS/(len+len) in whole percents."""
    line = first_code_line(prediction)
    if not line or not reference:
        return float(line == reference)  # fuzz.ratio: 100 for two empty strings, else 0 with one empty
    return round(100 * 2 * lcs_length(line, reference) / (len(line) + len(reference))) / 100


def code_sim_difflib(prediction: str, reference: str, **_) -> float:
    """code_sim as fuzzywuzzy without python-Levenshtein computes it: difflib's SequenceMatcher
    ratio of the first code line against the reference, in whole percents."""
    line = first_code_line(prediction)
    if not line or not reference:
        return float(line == reference)
    return round(100 * SequenceMatcher(None, line, reference).ratio()) / 100


METRICS: dict[str, Callable[..., float]] = {
    "qa_f1": qa_f1,
    "qa_f1_zh": qa_f1_zh,
    "rouge_l": rouge_l,
    "rouge_l_zh": rouge_l_zh,
    "classification": classification,
    "retrieval": retrieval,
    "retrieval_zh": retrieval_zh,
    "count": count,
    "code_sim": code_sim,
    "code_sim_difflib": code_sim_difflib,
}
CODE_SIMS = ("levenshtein", "difflib")  # code similarity as fuzz.ratio with / without python-Levenshtein


def metric_for(subset: str, code_sim: str = "levenshtein") -> str:
    """The metric a subset is scored with: its own, code_sim_difflib for code with code_sim='difflib'."""
    if code_sim not in CODE_SIMS:
        raise ValueError(f"code similarity must be one of {', '.join(CODE_SIMS)}, got {code_sim!r}")
    metric = spec_for(subset).metric
    return f"{metric}_difflib" if metric == "code_sim" and code_sim == "difflib" else metric


def metric_label(metric: str) -> str:
    """The metric's name for result rows: Chinese word metrics say when they ran character-level."""
    if metric in ("qa_f1_zh", "rouge_l_zh") and ZH_TOKENIZER != "jieba":
        return f"{metric}_char"
    return metric


def score_prediction(
    subset: str, prediction: str, answers: Sequence[str], all_classes: Sequence[str] | None, code_sim: str = "levenshtein"
) -> float:
    """One example's score: the subset's metric (metric_for), best over its reference answers (0 if none)."""
    if spec_for(subset).first_line_only:
        prediction = prediction.lstrip("\n").split("\n")[0]
    metric = METRICS[metric_for(subset, code_sim)]
    return max((metric(prediction, answer, all_classes=all_classes or ()) for answer in answers), default=0.0)
