"""Accuracy on held-out questions (data/questions.py: questions as data and the rule that reads an answer), for
any model: a raw one asked directly and asked to reason in its training text's format, a latent one thinking
before every chunk of the question as training lays out a document (think_answers), then answering (BOLT.md:
"the latent model writes its reasoning inside SoL PRIOR ... EoL before answering"). em.py's evaluation."""
import math

from data import questions as Q
from data import report as R
from data.layout import latent_marks, think_layout
from sample import generate, latent, score

DIRECT_TOKENS = 24  # what a raw model asked directly may write: an answer sentence ("The result is 5." is 16 bytes)


def eval_questions(model, tok, cfg, questions, mode):
    """Greedy accuracy on held-out questions and one row per question (prompt, generated text, extracted answer,
    correct). mode 'latent': the model answers laid out as training lays out a document (think_answers), and the
    rule reads the text it writes after its last thought; 'direct': a raw model answers in DIRECT_TOKENS tokens;
    'reason': a raw model is asked in its training text's format (the question's "prompt") and may
    write max_latent + 8 tokens (up to a "prompt_stop" token). The answer rule is data/questions.py's
    (--answer-regex overrides the file's). A latent model's metrics add ans_nll: nats per question of the
    answer as documents write it ("answer_text") after its own thoughts, which falls with accuracy where a
    bound over whole documents barely moves (the answer is one token of a chunk)."""
    if mode == "latent":
        return eval_latent(model, tok, cfg, questions)
    reason = mode == "reason"
    texts = [q.get("prompt", q["question"]) if reason else q["question"] for q in questions]
    n_new = DIRECT_TOKENS if mode == "direct" else cfg.max_latent + 8
    # a long prompt loses its oldest tokens so the prompt and the answer fit in the context
    prompts = [fit(tok, [tok.bos] + tok.encode(t), cfg.block_size - n_new) for t in texts]
    stops = [tok.eos]
    for s in sorted({q["prompt_stop"] for q in questions if "prompt_stop" in q} if reason else ()):
        if len(tok.encode(s)) != 1:
            raise ValueError(f"prompt_stop {s!r} is not one token of the {tok.name} tokenizer")
        stops += tok.encode(s)  # the reasoning ends there: the world's walk is one line, a tenth of the budget
    outs = generate(model, prompts, n_new, stop_tokens=tuple(stops), temperature=0.0, seed=cfg.seed,
                    batch_size=cfg.gen_batch)
    rows = []
    for i, (q, asked, o) in enumerate(zip(questions, texts, outs)):
        text = tok.decode([t for t in o["tokens"] if t not in tok.special_ids])
        regex = cfg.answer_regex or q.get("prompt_regex" if reason else "answer_regex")
        got = Q.extract(text, q["answer"], regex)
        rows.append({"mode": mode, "q": i, "prompt": asked, "generated": tok.decode(o["tokens"]),
                     "answer_text": text, "extracted": got, "answer": q["answer"],
                     "correct": Q.correct(got, q["answer"], regex)})
    return accuracy(rows, "_reason" if reason else ""), rows


def fit(tok, p, room):
    """A prompt cut to `room` tokens by dropping its oldest tokens after BOS."""
    return p if len(p) <= room else [tok.bos] + p[len(p) - room + 1:]


def accuracy(rows, tag=""):
    n = max(len(rows), 1)
    acc = sum(r["correct"] for r in rows) / n
    return {f"acc{tag}": acc, f"acc{tag}_se": math.sqrt(acc * (1 - acc) / n), "n_questions": len(rows)}


def think_answers(model, tok, cfg, questions):
    """A latent model answers each question laid out as training lays out a document in prior mode
    (data/layout.think_layout): before each of the question's chunks in turn it writes a thought (greedy, up to
    max_latent tokens ending at EoL, the layout marks banned as in the E-step), the last one before the chunk
    that holds the answer (the question's last, "open"; else a chunk of its own after them), then it continues
    that chunk with the answer (DIRECT_TOKENS tokens, up to the SoL of a next chunk or EOS). Prompts lose their
    oldest tokens to fit the context.
    -> (thoughts per question, whether all of them closed, the answer prompts, the answers' generate() outputs)."""
    chunks = [[tok.encode(c) for c in q.get("chunks") or [q["question"]]] + ([] if q.get("open") else [[]])
              for q in questions]
    thoughts, closed = [[] for _ in questions], [True] * len(questions)
    for j in range(max(map(len, chunks), default=0)):
        todo = [i for i, c in enumerate(chunks) if j < len(c)]
        prompts = [fit(tok, think_layout(tok, chunks[i], thoughts[i]), cfg.block_size - cfg.max_latent)
                   for i in todo]
        for i, o in zip(todo, generate(model, prompts, cfg.max_latent, stop_tokens=(tok.eol,), temperature=0.0,
                                       seed=cfg.seed, batch_size=cfg.gen_batch, banned=latent_marks(tok))):
            thoughts[i].append(latent(o))
            closed[i] = closed[i] and o["stopped"]
    prompts = [fit(tok, think_layout(tok, c, z), cfg.block_size - DIRECT_TOKENS) for c, z in zip(chunks, thoughts)]
    outs = generate(model, prompts, DIRECT_TOKENS, stop_tokens=(tok.eos, tok.sol), temperature=0.0, seed=cfg.seed,
                    batch_size=cfg.gen_batch)
    return thoughts, closed, prompts, outs


def eval_latent(model, tok, cfg, questions):
    """eval_questions for a latent model: think_answers, the answer rule on the text after the last thought (no
    answer when a thought never closed), and the answer's text scored after the answer prompt (ans_nll)."""
    thoughts, closed, prompts, outs = think_answers(model, tok, cfg, questions)
    gold = [tok.encode(q.get("answer_text", Q.answer_text(q["answer"])))[:DIRECT_TOKENS] for q in questions]
    scores = score(model, prompts, gold, batch_size=cfg.gen_batch)
    rows = []
    for i, (q, zs, ok, o, s) in enumerate(zip(questions, thoughts, closed, outs, scores)):
        text = tok.decode([t for t in o["tokens"] if t not in tok.special_ids])
        regex = cfg.answer_regex or q.get("answer_regex")
        got = Q.extract(text, q["answer"], regex) if ok else None
        rows.append({"mode": "latent", "q": i, "prompt": q["question"], "thoughts": [tok.decode(z) for z in zs],
                     "closed": ok, "generated": tok.decode(o["tokens"]), "answer_text": text, "extracted": got,
                     "answer": q["answer"], "correct": Q.correct(got, q["answer"], regex), "ans_logp": s["sum"]})
    nll = [-r["ans_logp"] for r in rows]
    m, sd = R.mean_sd(nll) if nll else (0.0, 0.0)
    return {**accuracy(rows), "ans_nll": m, "ans_nll_se": sd / math.sqrt(max(len(nll), 1))}, rows
