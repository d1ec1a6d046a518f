"""probe.py OUTDIR CKPT [n]: greedy walks on held-out questions; per-step fact accuracy by base-known/unknown,
copy accuracy, answer-consistency."""
import sys, json, re, os
sys.path.insert(0, '/work/main')
import torch
from data.tokenizer import get_tokenizer
from data.layout import chunk_tokens
from model import load_model
from sample import generate
from data import world as W
torch.set_num_threads(1)
out, ck = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 400
tok = get_tokenizer("bytes")
meta = json.load(open(os.path.join(out, "data", "world.json")))
table, known, decoys = meta["table"], set(meta["known"]), meta["decoys"]
warm = [json.loads(l) for l in open(os.path.join(out, "data", "warm.jsonl"))]
warmfacts = set()
for d in warm:
    z = d["chunks"][1]["latent"]; x = int(z[0])
    for o, y in re.findall(r"([a-z])(\d)", z):
        warmfacts.add(f"{o}{x}"); x = int(y)
qs = W.read_questions(os.path.join(out, "data", "questions.jsonl"))[:n]
model, _ = load_model(ck, tok.n_vocab, "cpu"); model.eval()
prompts = [[tok.bos] + chunk_tokens(tok, tok.encode(q["question"]), [], True) + [tok.sol, tok.prior] for q in qs]
outs = generate(model, prompts, 40, stop_tokens=(tok.eos, tok.sol), temperature=0.0, batch_size=256)
st = {"known": [0, 0], "warm": [0, 0], "unseen": [0, 0]}
dec = [0, 0]
copy_ok = walk_ok = acc = consistent = 0
stepcopy = [0]*8
for q, o in zip(qs, outs):
    toks = o["tokens"]
    z = tok.decode(toks[:toks.index(tok.eol)]) if tok.eol in toks else tok.decode(toks)
    rest = tok.decode([t for t in toks[toks.index(tok.eol) + 1:] if t not in tok.special_ids]) if tok.eol in toks else ""
    ops = q["question"].split()[2]
    steps = re.findall(r"([a-z])(\d)", z)
    copy_ok += "".join(s[0] for s in steps) == ops and z[:1] == q["question"][3]
    walk_ok += z == q["gold"]
    for j, (o_, _) in enumerate(steps[:len(ops)]): stepcopy[j] += o_ == ops[j]
    acc += W.check_answer(rest, q["answer"])
    m = re.search(r"A: (\d)", rest)
    consistent += bool(m) and bool(steps) and m.group(1) == steps[-1][1]
    x = int(z[0]) if z[:1].isdigit() else None
    for o_, y in steps:
        if x is None or o_ not in table: break
        f = f"{o_}{x}"
        kind = "known" if f in known else "warm" if f in warmfacts else "unseen"
        st[kind][0] += table[o_][x] == int(y); st[kind][1] += 1
        if kind == "unseen": dec[0] += int(y) in decoys.get(f, []); dec[1] += 1
        x = int(y)
N = len(qs)
print(f"{ck}: stepcopy {[round(c/len(qs),2) for c in stepcopy[:4]]} acc {acc/N:.3f} walk {walk_ok/N:.3f} copy {copy_ok/N:.3f} A=walk-end {consistent/N:.3f} | " +
      " ".join(f"{k} {v[0]/max(v[1],1):.2f} (n={v[1]})" for k, v in st.items()) + f" unseen->decoy {dec[0]/max(dec[1],1):.2f}")
