import sys, json, os
sys.path.insert(0, '/work/main')
import torch
from data.tokenizer import get_tokenizer
from data.layout import chunk_tokens
from model import load_model
from sample import generate
from data import world as W
torch.set_num_threads(1)
out, ck = sys.argv[1], sys.argv[2]
tok = get_tokenizer("bytes")
qs = W.read_questions(os.path.join(out, "data", "questions.jsonl"))[:12]
model, _ = load_model(ck, tok.n_vocab, "cpu"); model.eval()
prompts = [[tok.bos] + chunk_tokens(tok, tok.encode(q["question"]), [], True) + [tok.sol, tok.prior] for q in qs]
outs = generate(model, prompts, 40, stop_tokens=(tok.eos, tok.sol), temperature=0.0, batch_size=256)
for q, o in zip(qs, outs):
    print(repr(q["question"]), q["gold"], q["answer"], "->", repr(tok.decode(o["tokens"])))
