"""CPU research loop: does a small model learn needle retrieval? (results/recipe_cpu_probe.csv)

Usage: python scripts/recipe_probe_cpu.py ATTENTION CTX STEPS [DIM LAYERS HEADS KV LR RETRIEVAL_FRAC BATCH NSA]
Environment: TOK (a tokenizer folder, or 'byte'), VOCAB (its size), TASKS (needle-family tasks, comma list).
The recorded runs: TOK=/tmp/bpe1k VOCAB=1024 TASKS=niah_single, `full|nsa 96 1500 128 4 2 2 3e-3 1.0 16`, with
the tokenizer from train_bpe(tokenizer_text(default_corpus(2**20), 0, n_instances=1000), "/tmp/bpe1k", 1024).
Held-out exact match and answer-token accuracy every 50 steps on 40 prompts.
"""
import sys, time, random, torch, math
import torch.nn.functional as F
from nsa_bench.models.config import preset
from nsa_bench.models.model import Transformer
from nsa_bench.models.tokenizer import HFTokenizer
from nsa_bench.train_data import TrainData
from nsa_bench.corpus import default_corpus
torch.manual_seed(0); torch.set_num_threads(1)
att, ctx, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dim, layers, heads, kv = (int(x) for x in (sys.argv[4:8] if len(sys.argv) > 7 else (64, 2, 4, 2)))
lr = float(sys.argv[8]) if len(sys.argv) > 8 else 3e-3
rfrac = float(sys.argv[9]) if len(sys.argv) > 9 else 0.75
batch = int(sys.argv[10]) if len(sys.argv) > 10 else 16
nsa = sys.argv[11] if len(sys.argv) > 11 else "8/4/16/4/32"
from nsa_bench.models.tokenizer import ByteTokenizer
tok = ByteTokenizer() if __import__("os").environ.get("TOK") == "byte" else HFTokenizer(__import__("os").environ.get("TOK", "/tmp/bpe4k"))
import pickle, os
text = default_corpus(2**20)
data = TrainData(text, tok, ctx, batch, 0, rfrac, tasks=tuple(__import__("os").environ.get("TASKS", "niah_single,niah_multikey,niah_multivalue,niah_multiquery,vt").split(",")))
cfg = preset("tiny", attention=att, vocab_size=(320 if tok.name == "byte" else int(__import__("os").environ.get("VOCAB", "4096"))), max_seq_len=ctx+8, dim=dim, n_layers=layers, n_heads=heads, n_kv_heads=kv, ffn_dim=int(dim*8/3)//16*16, nsa=nsa)
m = Transformer(cfg, nsa_impl="reference")
print(cfg, m.num_params())
opt = torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
t0 = time.time()
for step in range(steps):
    for g in opt.param_groups: g["lr"] = lr * min(1, (step+1)/20)
    ids, mask = data.batch_at(step)
    logits = m(ids[:, :-1])
    per = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="none").view_as(mask)
    loss = per.mean() + per[mask].mean()
    loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); opt.zero_grad()
    if step % 50 == 49 or step == steps-1:
        with torch.no_grad():
            vids, vmask, tasks = data.val_retrieval(0, 40)
            lg = m(vids[:, :-1]); hit = lg.argmax(-1) == vids[:, 1:]
            ex = [bool(hit[r][vmask[r]].all()) for r in range(len(tasks))]
            tokacc = float(hit[vmask].float().mean())
            per_task = {t: sum(e for e, tt in zip(ex, tasks) if tt == t) for t in dict.fromkeys(tasks)}
        print(f"{att} step {step+1} loss {per.mean():.3f} ans {per[mask].mean():.3f} val_em {sum(ex)/len(ex):.2f} tok {tokacc:.2f} {per_task} {time.time()-t0:.0f}s", flush=True)
