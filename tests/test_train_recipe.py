"""The retrieval recipe on a CPU: a tiny model learns single-needle retrieval at 96 tokens.

The needle-tiny preset (4 layers, 2 heads of 64), a 1024-token BPE trained on the default corpus,
every row dense retrieval. Without retrieval the answers' tokens are right about a quarter of the time
(the format: the leading space and the final period); the digits can only come from the needle.
NSA's window is 32 tokens here (config 8/4/16/4/32), so its retrieval goes through compression and
selection. Minutes on 2 cores: marked slow.
"""

import pandas as pd
import pytest

from nsa_bench.corpus import default_corpus
from nsa_bench.models.tokenizer import train_bpe
from nsa_bench.train import TrainConfig, train
from nsa_bench.train_data import tokenizer_text

def _train(tmp_path, attention: str, steps: int) -> pd.DataFrame:
    corpus = default_corpus(2**20)
    (tmp_path / "corpus.txt").write_text(corpus, encoding="utf-8")
    train_bpe(tokenizer_text(corpus, 0, n_instances=1000), tmp_path / "tok", 1024)
    cfg = TrainConfig(data=str(tmp_path / "corpus.txt"), out=str(tmp_path / "run"), preset="needle-tiny",
                      attention=attention, tokenizer=str(tmp_path / "tok"), tasks=("niah_single",),
                      retrieval_frac=1.0, max_steps=steps, eval_every=100, device="cpu")
    train(cfg, progress=False)
    frame = pd.read_csv(tmp_path / "run" / "train.csv")
    return frame[frame["val_answer_token_acc"].notna()].sort_values("step")


@pytest.mark.slow
def test_full_attention_learns_single_needle_retrieval(tmp_path):
    evals = _train(tmp_path, "full", 700)
    acc = evals["val_answer_token_acc"]
    assert acc.iloc[0] < 0.35 and acc.iloc[-1] > 0.5, evals[["step", "val_answer_token_acc"]].to_string()
