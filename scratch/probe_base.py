import sys, json, re, os, random
sys.path.insert(0, '/work/main')
import torch
from data.tokenizer import get_tokenizer
from model import load_model
from sample import generate
torch.set_num_threads(2)
out, ck = sys.argv[1], sys.argv[2]
tok = get_tokenizer("bytes")
meta = json.load(open(os.path.join(out, "data", "world.json")))
table, known = meta["table"], set(meta["known"])
qs = [json.loads(l) for l in open(os.path.join(out, "data", "questions.jsonl"))][:300]
model, _ = load_model(ck, tok.n_vocab, "cpu"); model.eval()
# context: a base-like line then the probe
prompts = [[tok.bos] + tok.encode(q['question'].split()[2] + ': ' + q['question'].split()[1]) for q in qs]
outs = generate(model, prompts, 12, stop_tokens=(tok.eos,), temperature=0.0, batch_size=256)
copy = 0
for q, o in zip(qs, outs):
    z = q['question'].split()[1] + tok.decode([t for t in o["tokens"] if t not in tok.special_ids]).split("\n")[0]
    steps = re.findall(r"([a-z])(\d)", z)
    copy += "".join(s[0] for s in steps) == q['question'].split()[2]
print("base copy", copy / len(qs), z, q)
known = set(meta["known"]); st = {True: [0, 0], False: [0, 0]}
for q, o in zip(qs, outs):
    z = q['question'].split()[1] + tok.decode([t for t in o["tokens"] if t not in tok.special_ids]).split("\n")[0]
    x = int(z[0])
    for o_, y in re.findall(r"([a-z])(\d)", z):
        f = f"{o_}{x}"; st[f in known][0] += table[o_][x] == int(y); st[f in known][1] += 1; x = int(y)
print("base facts: known %.2f uncertain %.2f" % (st[True][0] / st[True][1], st[False][0] / st[False][1]))
