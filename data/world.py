"""The built-in world: a CPU-sized stand-in for the paper's setting (web text as compressed thought).

The knowledge is `ops` fixed random permutations of the digits, named by letters: fact "k7 = 3" says k(7) = 3.
A walk writes a start digit then, per step, the operator's letter and the result: "7k3d5" says k(7) = 3,
d(3) = 5. Operators come in `steps` blocks (a-f, g-l, ...); a problem takes one letter from each block, so a
walk finds each step's operator in the question by content, not by counting. Its parts mirror the paper's:
  base      raw pretraining text, lines "7 ciqx: 7c8i5q7x5" (a problem, then the walk through it) for
            problems no other part holds. It states the `known` fraction of the facts as they are and each
            other fact as its true value or one of `decoys` wrong values, equally often: the base model
            (TinyLlama's role) can follow a list of steps and knows some facts for sure, the rest only as
            candidates.
  target    the data-constrained corpus of *compressed* documents, written the way papers write them:
            "Q: 7 ciqx" then "A: 5 for 7 ciqx", the walk left out. Its gold walks live in a separate file
            (target_gold.jsonl) that only the oracle baseline and the diagnostics read, never the E-step.
  warm      a disjoint set whose latents come from the built-in teacher (GPT-4o-mini's role), in the authors'
            chunks format. Like GPT-4o-mini it is imperfect: it knows the base-known facts and a `teacher`
            fraction of the others, and guesses the rest as the base does, so its walks do not always end at
            the answer. (A perfect teacher needs a set so small, to leave knowledge for EM, that the warm
            start failed to learn the format: 8-19% on 30-100 documents.)
  warm_inline  the warm set as raw text, each teacher walk inline where the base text puts a walk (a raw
            baseline's view of the same worked examples)
  heldout   held-out documents for raw NLL / IW-ELBO, and held-out questions (data/questions.py format), test
            and dev (n_dev, dev_questions.jsonl: drawn last, disjoint from the test questions, for choosing a
            recipe without looking at the test), that carry their own answer rules: a latent or directly asked
            model writes "A: 5 ...", read by ANSWER_RE; a raw model asked to reason gets the base text's
            format, "7 ciqx:", and writes the walk, whose answer is where it ends (WALK_RE)
A document is one problem, two chunks: the question (its latent is empty: nothing to think before reading a
question) and the answer (its latent is the walk). Problems never repeat across the parts.

Why EM has something to do: a walk is right only if each of its `steps` facts is, and the warm start is
unsure of many. The answer in X is the check: a posterior sample whose guesses are right ends at the stated
answer and gets the weight, so with K > 1 each E-step keeps more right walks than the model writes on its own,
and the next M-step learns their facts; with K = 1 nothing is checked. The raw models see only
"Q: 7 ciqx" -> "A: 5 for 7 ciqx", a composition of permutations they cannot learn from compressed text.
One problem per document, and an answer that restates its problem, because BOLT.md's E-step and IW-ELBO
condition chunk i on the *raw* text of the previous chunks, a context the M-step models never see in training
(there every chunk starts with SoL); with the problem in X_i the posterior copies it from the chunk it was
trained to read (docs/RESULTS.md, "How the compact world got here").
The prose shape (--shape prose) writes the same knowledge the way real corpora do: a target / held-out / warm
document is a {"text"} document of `per_doc` problems in plain words, each a statement paragraph then a result
paragraph, a filler sentence opening the next statement half the time,
  "Start from 7. Apply c, then i. Next apply q, then x.\n\nThe result is 5.\n\nNow a new problem. Begin with ..."
(the wording drawn from a few templates by its own seeded rng), the answer ONLY the result, always in the form
RESULT_RE reads. It is cut by the project's chunker (data/corpus.chunk_text) with the budget em.py gives a
--corpus (chunk_tokens = block_size // 4 tokens); the chunker never joins two paragraphs, so the chunk holding a
result starts after its whole statement and a thought written before that chunk can read the problem (without
the paragraphs the result shared a chunk with its problem's last operators for 85% of second problems, which no
thought before that chunk can know: docs/prose_paragraphs.md). A statement with its filler may span two chunks;
target.jsonl is what a --corpus user would get. The chunk holding a problem's result digit gets its walk as
latent (several: joined by a space), every other chunk "" (the teacher's walk in warm, the true one in
target_gold and heldout). The base text states its problems in the same words with the walk worked inline,
"...then x.\n\nWork: 7c8i5q7x5. The result is 5.\n\n", `walks_per_base_doc` to a document. A question is one
problem of a document written as the others are (per_doc problems; each problem of it is a question, so half
stand second, after a problem stated with its result, as half the target's problems do): its text up to the
result digit, "chunks" as the chunker split that document, the last one cut before the digit and "open"
(data/questions.py: the thought goes before the chunk holding the result, where training puts that chunk's
walk, and the answer continues it); a raw model is prompted "<text before the result sentence>Work:" and read
by PROSE_WALK_RE.
The designs tried before these two: docs/RESULTS.md.
"""
import argparse
import json
import os
import random
import re
import sys
from dataclasses import asdict, dataclass

from data.cli import add_flags, opt, out_dir_error, parser_error
from data.corpus import chunk_text, write_atomic, write_docs, write_json

LETTERS = "abcdefghijklmnopqrstuvwxyz"
SHAPES = ("compact", "prose")


@dataclass
class WorldConfig:
    seed: int = opt(0, "seed of the tables, documents, teacher and questions")
    digits: int = opt(10, "the permutations act on 0..digits-1 (at most 10: one character per value)")
    ops: int = opt(24, "operators (letters a..): ops * digits facts, a block of ops // steps per step")
    steps: int = opt(4, "operators per question: the length of the hidden walk")
    known: float = opt(0.5, "fraction of the facts the base text states as they are")
    teacher: float = opt(0.5, "fraction of the base-unknown facts the teacher knows (it guesses the rest)")
    decoys: int = opt(2, "wrong values the base text gives each other fact, as often as its true one")
    n_base: int = opt(2000, "base pretraining documents")
    walks_per_base_doc: int = opt(4, "walks per base document")
    n_target: int = opt(2000, "target documents (latent-free)")
    n_warm: int = opt(800, "warm-start documents with teacher latents")
    n_heldout: int = opt(200, "held-out documents (NLL / IW-ELBO)")
    n_questions: int = opt(1000, "held-out test questions (accuracy)")
    n_dev: int = opt(0, "development questions, drawn after every other part (disjoint from the test ones)")
    shape: str = opt("compact", "how documents are written: compact (one problem) or prose (PROSE below)",
                     SHAPES)
    per_doc: int = opt(2, "prose: problems per target / held-out / warm document (2 fit a 256 window)")
    chunk_tokens: int = opt(32, "prose: the chunker's token budget (em.py passes block_size // 4)")


def make_table(cfg, rng):
    """table[letter][x] = that operator's value at x; each operator a random permutation of the digits."""
    return {o: rng.sample(range(cfg.digits), cfg.digits) for o in LETTERS[:cfg.ops]}


def walk(table, start, ops):
    """The walk '7k3d5...' from start through ops (a string of letters), and where it ends."""
    out, x = [str(start)], start
    for o in ops:
        x = table[o][x]
        out.append(f"{o}{x}")
    return "".join(out), x


def question_text(problem):
    return f"Q: {problem[0]} {problem[1]}\n"


def answer_text(problem, result):
    """'A: 5 for 7 ciqx': the result first (next to the walk's end), then the problem it answers (module
    docstring: why the answer restates it)."""
    return f"A: {result} for {problem[0]} {problem[1]}\n"


ANSWER_RE = re.compile(r"A: (\d+)")
WALK_RE = re.compile(r"^\s*\d(?:[a-z]\d)*[a-z](\d)")  # ' 7c8i5q7x5': the digit after the last operator


def question_record(table, problem):
    """One held-out question with its rules as data (data/questions.py): asked directly, or in the walk format."""
    z, end = walk(table, *problem)
    return {"question": question_text(problem), "answer": end, "answer_text": answer_text(problem, end), "gold": z,
            "answer_regex": ANSWER_RE.pattern,
            "prompt": f"{problem[0]} {problem[1]}:", "prompt_regex": WALK_RE.pattern, "prompt_stop": "\n"}


def check_answer(text, answer):
    """True when the first 'A: <n>' in generated text states the right answer."""
    m = ANSWER_RE.search(text)
    return m is not None and m.group(1) == str(answer)


def problem_chunks(table, problem, with_latent):
    z, result = walk(table, *problem)
    return [{"suffix": question_text(problem), "latent": "" if with_latent else None},
            {"suffix": answer_text(problem, result), "latent": z if with_latent else None}]


def teacher_walks(cfg, table, decoys, rng, problems, read_result=False):
    """The imperfect teacher's walks for problems: it knows the base-known facts and a `teacher` fraction of the
    others; the rest it guesses as the base text does (the true value or a decoy). Blind (the compact world):
    each guess drawn equally likely at every occurrence, the walk going on from there, so it may end anywhere.
    read_result (the prose world, where the teacher annotates a chunk that states the result, as GPT-4o-mini
    does in the paper): among the walks its guesses allow, one ending at the stated result, drawn uniformly;
    right only when its guesses are, but never contradicting the text it explains."""
    wrong = {f for f in sorted(decoys) if rng.random() >= cfg.teacher}
    options = lambda o, x: [table[o][x], *decoys[o, x]] if (o, x) in wrong else [table[o][x]]
    out = []
    for start, ops in problems:
        if read_result:
            walks = [(str(start), start)]
            for o in ops:  # every walk its guesses allow: at most (1 + decoys) ** steps
                walks = [(z + f"{o}{y}", y) for z, x in walks for y in options(o, x)]
            end = walk(table, start, ops)[1]
            out.append(rng.choice([z for z, y in walks if y == end]))  # the true walk is one of them
            continue
        x, z = start, [str(start)]
        for o in ops:
            x = rng.choice(options(o, x)) if (o, x) in wrong else table[o][x]  # a draw only when unsure, as ever
            z.append(f"{o}{x}")
        out.append("".join(z))
    return out


def teacher_docs(cfg, table, decoys, rng, problems):
    """Warm-start docs (compact shape) whose latents are the teacher's walks."""
    out = []
    for d, (p, z) in enumerate(zip(problems, teacher_walks(cfg, table, decoys, rng, problems))):
        chunks = problem_chunks(table, p, True)
        chunks[1]["latent"] = z
        out.append({"id": f"warm-{d}", "chunks": chunks})
    return out


def inline_doc(doc, problem):
    """A compact warm-start doc as raw text with its teacher walk inline in the base text's format, the line
    '7 ciqx: 7c8i5q7x5' between the question and the answer: what a raw model reads of the walk a latent model
    is given as Z (em.py's raw arm 'inline')."""
    q, a = doc["chunks"]
    line = f"{problem[0]} {problem[1]}: {a['latent']}\n"
    return {"id": doc["id"], "chunks": [{"suffix": q["suffix"], "latent": None},
                                        {"suffix": line + a["suffix"], "latent": None}]}


def step_ops(cfg, j):
    """The operators step j may use: a block of ops // steps letters per step (step 0: a..f for 24 ops and 4
    steps). A step's operator is then the one question letter from its block, a lookup by content the
    walk can make at every step, not a count of positions."""
    m = cfg.ops // cfg.steps
    return LETTERS[j * m:(j + 1) * m]


def problem_space(cfg):
    """How many distinct problems the world has: start digits x one operator per step from its block."""
    return cfg.digits * (cfg.ops // cfg.steps) ** cfg.steps


def n_problems(cfg):
    """Distinct problems the questions and the documents hold (a prose document holds per_doc of them)."""
    per_doc = cfg.per_doc if cfg.shape == "prose" else 1
    return cfg.n_questions + cfg.n_dev + per_doc * (cfg.n_heldout + cfg.n_target + cfg.n_warm)


def check(cfg):
    """Every reason `cfg` cannot build a world, as one-line messages naming data.world's flags (before any work)."""
    f = lambda k: "--" + k.replace("_", "-")
    errors = [f"must be >= {lo}, got {getattr(cfg, k)} ({f(k)})" for k, lo in
              (("digits", 1), ("ops", 1), ("steps", 1), ("decoys", 0), ("n_base", 0), ("walks_per_base_doc", 1),
               ("n_target", 0), ("n_warm", 0), ("n_heldout", 0), ("n_questions", 0), ("n_dev", 0))
               if getattr(cfg, k) < lo]
    errors += [f"must be in [0, 1], got {getattr(cfg, k)} ({f(k)})" for k in ("known", "teacher")
               if not 0 <= getattr(cfg, k) <= 1]  # a NaN fails too
    errors += [msg for bad, msg in (
        (cfg.digits > 10, f"must be <= 10 (one character per value), got {cfg.digits} (--digits)"),
        (cfg.ops > len(LETTERS), f"must be <= {len(LETTERS)} (one letter each), got {cfg.ops} (--ops)"),
        (cfg.steps > cfg.ops, f"{cfg.steps} exceeds --ops {cfg.ops} (--steps)"),
        (cfg.decoys >= cfg.digits, f"must be < --digits {cfg.digits}, got {cfg.decoys} (--decoys)")) if bad]
    errors += [msg for bad, msg in (
        (cfg.shape not in SHAPES, f"must be one of {', '.join(SHAPES)}, got {cfg.shape!r} (--shape)"),
        (cfg.per_doc < 1, f"must be >= 1, got {cfg.per_doc} (--per-doc)"),
        (cfg.chunk_tokens < 1, f"must be >= 1, got {cfg.chunk_tokens} (--chunk-tokens)")) if bad]
    if not errors:
        n = n_problems(cfg)
        if n >= problem_space(cfg):  # >=: the base text needs problems of its own
            errors.append(f"the world needs {n} distinct problems but only {problem_space(cfg)} exist; raise --ops "
                          "or --digits, or shrink the corpora (--n-target, --per-doc)")
    return errors


def _problems(cfg, rng, n):
    """n distinct problems (start digit, one operator letter per step), in a seeded order."""
    seen, out = set(), []
    while len(out) < n:  # rejection sampling: fine while n stays well below the space
        p = random_problem(cfg, rng)
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def random_problem(cfg, rng):
    return rng.randrange(cfg.digits), "".join(rng.choice(step_ops(cfg, j)) for j in range(cfg.steps))


def base_line(cfg, table, decoys, taken, rng):
    """One base text line 'start ops: walk' for a random problem that no corpus or question holds: a known
    fact is stated as it is, an unknown one as its true value or one of its decoys, equally likely, and the
    walk goes on from the value stated."""
    start, ops = random_problem(cfg, rng)
    while (start, ops) in taken:
        start, ops = random_problem(cfg, rng)
    x, out = start, [str(start)]
    for o in ops:
        x = rng.choice([table[o][x], *decoys.get((o, x), ())])
        out.append(f"{o}{x}")
    return f"{start} {ops}: {''.join(out)}\n"


def build(cfg, tok=None):
    """-> dict of name -> list of docs / records (see the module docstring). `tok`: what the prose shape's
    chunk budget counts (a Tokenizer or a length function; default characters, = the byte tokenizer's tokens
    on this ASCII text); the compact shape ignores it."""
    errors = check(cfg)
    if errors:
        raise ValueError("; ".join(errors))
    rng = random.Random(cfg.seed)
    table = make_table(cfg, rng)
    facts = [(o, x) for o in table for x in range(cfg.digits)]
    known = set(rng.sample(facts, round(cfg.known * len(facts))))
    decoys = {(o, x): rng.sample([y for y in range(cfg.digits) if y != table[o][x]], cfg.decoys)
              for o, x in facts if (o, x) not in known}
    knowledge = {"table": table, "known": sorted(f"{o}{x}" for o, x in known),
                 "decoys": {f"{o}{x}": v for (o, x), v in sorted(decoys.items())}}
    if cfg.shape == "prose":
        return {**knowledge, **build_prose(cfg, tok, table, decoys, rng)}
    # problems in the order questions, held-out, target, warm, dev questions: changing a corpus size leaves the
    # ones before it unchanged (comparable evaluations); the base text is drawn apart and never states one of them
    problems = _problems(cfg, rng, n_problems(cfg))
    taken = set(problems)
    problems = problems[::-1]
    cut = lambda n: [problems.pop() for _ in range(n)]
    docs = lambda name, n, with_latent: [{"id": f"{name}-{d}", "chunks": problem_chunks(table, p, with_latent)}
                                         for d, p in enumerate(cut(n))]
    questions = [question_record(table, p) for p in cut(cfg.n_questions)]
    heldout = docs("heldout", cfg.n_heldout, True)
    target_gold = docs("target", cfg.n_target, True)
    target = [{"id": d["id"], "chunks": [{"suffix": c["suffix"], "latent": None} for c in d["chunks"]]}
              for d in target_gold]
    base_rng = random.Random(f"{cfg.seed}/base")
    base = [{"id": f"base-{d}", "chunks": [{"suffix": "".join(base_line(cfg, table, decoys, taken, base_rng)
                                                              for _ in range(cfg.walks_per_base_doc)),
                                            "latent": None}]} for d in range(cfg.n_base)]
    warm_problems = cut(cfg.n_warm)
    warm = teacher_docs(cfg, table, decoys, random.Random(f"{cfg.seed}/teacher"), warm_problems)
    return {**knowledge, "base": base, "questions": questions, "heldout": heldout, "target": target,
            "target_gold": target_gold, "warm": warm,
            "warm_inline": [inline_doc(d, p) for d, p in zip(warm, warm_problems)],
            "dev_questions": [question_record(table, p) for p in cut(cfg.n_dev)]}


# ----------------------------------------------------------------------------- the prose shape

# A problem in words: an opening sentence, then its operators two to a sentence; the wording is drawn from these
# templates by a seeded rng. Every sentence starts with a capital, so the chunker's sentence split sees each.
OPENINGS = ("Start from {}. ", "Begin with {}. ", "Take the number {}. ")
FIRST = ("Apply {}, then {}. ", "First apply {}, then {}. ")
NEXT = ("Next apply {}, then {}. ", "After that apply {}, then {}. ", "Then apply {}, then {}. ")
FIRST_ONE, NEXT_ONE = ("Apply {}. ",), ("Next apply {}. ", "Finally apply {}. ")
FILLERS = ("Here is another one. ", "Now a new problem. ", "Try the next one. ")
RESULT = "The result is {}."  # the one answer sentence, always this form: RESULT_RE reads it
PARA = "\n\n"  # a statement and its result are paragraphs of their own: the chunker never joins two
RESULT_RE = re.compile(r"The result is (\d)\.")
RESULT_HEAD = RESULT[:RESULT.index("{")]  # "The result is ": where an open question's text stops
OPEN_RESULT_RE = re.compile(r"^(\d)\.")  # an open question's answer: the digit its text stops before
# a raw model asked "<statement> Work:" writes the walk (base text), or goes straight to the result sentence
PROSE_WALK_RE = re.compile(r"(?:^\s*\d(?:[a-z]\d)*[a-z]|The result is )(\d)")


def statement(problem, rng):
    """'Start from 7. Apply c, then i. Next apply q, then x.': a problem as documents state it."""
    start, ops = problem
    out = [rng.choice(OPENINGS).format(start)]
    for k in range(0, len(ops), 2):
        pair = ops[k:k + 2]
        forms = (FIRST if k == 0 else NEXT) if len(pair) == 2 else (FIRST_ONE if k == 0 else NEXT_ONE)
        out.append(rng.choice(forms).format(*pair))
    return "".join(out).rstrip(" ")


def prose_text(statements, answers, rng):
    """Problems one after another, each its statement paragraph then a paragraph with only its result, a filler
    sentence opening the next statement half the time. -> (text, [(statement start, result digit offset)])."""
    text, spans = "", []
    for k, (st, answer) in enumerate(zip(statements, answers)):
        if k:
            text += PARA + (rng.choice(FILLERS) if rng.random() < 0.5 else "")
        begin = len(text)
        text += st + PARA
        spans.append((begin, len(text) + answer.index(" is ") + 4))
        text += answer
    return text, spans


def prose_doc(doc_id, text, spans, walks, tok, budget):
    """A {"text"} document chunked as em.py chunks a --corpus (data/corpus.chunk_text, same budget); the chunk
    holding a problem's result digit gets that problem's walk (several: joined by a space), every other chunk
    an empty latent. walks=None: no latents (the target as --corpus users get it)."""
    chunks, end = [], 0
    for c in chunk_text(text, tok, budget):
        begin, end = end, end + len(c)
        z = " ".join(w for (_, r), w in zip(spans, walks or ()) if begin <= r < end)
        chunks.append({"suffix": c, "latent": None if walks is None else z})
    return {"id": doc_id, "chunks": chunks}


def inline_walks(text, spans, walks):
    """Prose text with each problem's walk worked inline before its result sentence, as the base text states it
    ('...then x.\n\nWork: 7c8i5q7x5. The result is 5.'); spans: prose_text's (statement start, result digit offset)."""
    at = RESULT.index("{}")  # the result digit's offset in its sentence
    for (_, r), z in sorted(zip(spans, walks), reverse=True):  # from the end: earlier offsets stay valid
        text = text[:r - at] + f"Work: {z}. " + text[r - at:]
    return text


def prose_base_doc(cfg, table, decoys, taken, rng):
    """Base text in the documents' wording with the walk worked inline before the result:
    'Start from 7. Apply c, then i. Next apply q, then x.\n\nWork: 7c8i5q7x5. The result is 5.\n\n', problems no
    corpus or question holds, facts stated as in the compact base text (base_line)."""
    out = ""
    for _ in range(cfg.walks_per_base_doc):
        line = base_line(cfg, table, decoys, taken, rng)  # '7 ciqx: 7c8i5q7x5\n'
        start, ops, z = re.fullmatch(r"(\d) ([a-z]+): (\w+)\n", line).groups()
        out += statement((int(start), ops), rng) + PARA + f"Work: {z}. " + RESULT.format(z[-1]) + PARA
    return out


def build_prose(cfg, tok, table, decoys, rng):
    """The prose shape's parts (module docstring, PROSE): the same problems and knowledge, written as words."""
    per = cfg.per_doc
    problems = _problems(cfg, rng, n_problems(cfg))  # as compact: questions, held-out, target, warm, dev
    taken = set(problems)
    problems = problems[::-1]
    cut = lambda n: [problems.pop() for _ in range(n)]
    words = random.Random(f"{cfg.seed}/prose")  # the wording: apart, so it never moves a problem or a fact

    def doc(name, d, ps, walks_of=None):
        text, spans = prose_text([statement(p, words) for p in ps], [RESULT.format(walk(table, *p)[1]) for p in ps],
                                 words)
        walks = walks_of(ps) if walks_of else [walk(table, *p)[0] for p in ps]
        return prose_doc(f"{name}-{d}", text, spans, walks, tok, cfg.chunk_tokens), text, spans, walks

    docs = lambda name, n, walks_of=None: [doc(name, d, cut(per), walks_of) for d in range(n)]

    def questions(name, n):  # n problems in documents of per_doc, each problem a question where it stands
        out = []
        for d, i in enumerate(range(0, n, per)):
            ps = cut(min(per, n - i))
            gold, text, spans, _ = doc(name, d, ps)
            out += [prose_question(table, p, gold, text, span, j) for j, (p, span) in enumerate(zip(ps, spans))]
        return out

    test = questions("question", cfg.n_questions)
    heldout = [d for d, *_ in docs("heldout", cfg.n_heldout)]
    gold = docs("target", cfg.n_target)
    target = [prose_doc(d["id"], text, spans, None, tok, cfg.chunk_tokens) for d, text, spans, _ in gold]
    teacher = random.Random(f"{cfg.seed}/teacher")
    warm = docs("warm", cfg.n_warm, lambda ps: teacher_walks(cfg, table, decoys, teacher, ps, read_result=True))
    # the teacher's walks worked inline as the base text works them: what em.py's raw arm 'inline' reads
    warm_inline = [prose_doc(d["id"], inline_walks(text, spans, walks), [], None, tok, cfg.chunk_tokens)
                   for d, text, spans, walks in warm]
    base_rng = random.Random(f"{cfg.seed}/base")
    base = [{"id": f"base-{d}", "chunks": [{"suffix": prose_base_doc(cfg, table, decoys, taken, base_rng),
                                            "latent": None}]} for d in range(cfg.n_base)]
    return {"base": base, "questions": test, "heldout": heldout, "target": target,
            "target_gold": [d for d, *_ in gold], "warm": [d for d, *_ in warm], "warm_inline": warm_inline,
            "dev_questions": questions("dev", cfg.n_dev)}


def prose_question(table, problem, doc, text, span, position):
    """A held-out question where a document states it (data/questions.py): the document's text up to the
    problem's result digit, "...then x. The result is ", as the chunker split the document ("chunks": its chunks
    up to the one holding the digit, that one cut before it; "open": the thought goes before that chunk, as
    training puts the walk before the chunk holding the result, and the answer continues it). The problems
    before it in the document stand as documents state them, results included. The answer is the digit
    (OPEN_RESULT_RE; "answer_text": "5.", what the document writes there); a raw model asked to reason gets the
    base text's format, '<text before the result sentence>Work:', read by PROSE_WALK_RE."""
    z, end = walk(table, *problem)
    r = span[1]  # the result digit's offset in text
    chunks, at = [], 0
    for c in doc["chunks"]:
        chunks.append(c["suffix"][:r - at])
        at += len(c["suffix"])
        if at > r:
            break
    opened = bool(chunks[-1])  # else the digit opens a chunk (a budget that splits sentences): so does the thought
    head = text[:r - len(RESULT_HEAD)]
    return {"question": text[:r], "chunks": chunks if opened else chunks[:-1], "open": opened, "answer": end,
            "answer_text": text[r:r + 2], "gold": z, "position": position, "answer_regex": OPEN_RESULT_RE.pattern,
            "prompt": head + "Work:", "prompt_regex": PROSE_WALK_RE.pattern, "prompt_stop": "."}


FILES = ("base", "target", "target_gold", "warm", "warm_inline", "heldout")


def write(cfg, out, tok=None):
    """Write the world under out/ (docs as chunked JSONL, questions.jsonl, world.json last = complete)."""
    w = build(cfg, tok)  # first: a bad config is refused before the directory exists
    os.makedirs(out, exist_ok=True)
    for name in FILES:
        write_docs(os.path.join(out, f"{name}.jsonl"), w[name])
    for name in ("questions", "dev_questions")[:2 if w["dev_questions"] else 1]:  # no file: no dev split
        write_atomic(os.path.join(out, f"{name}.jsonl"), "".join(json.dumps(q) + "\n" for q in w[name]))
    meta = {"config": asdict(cfg), "table": w["table"], "known": w["known"], "decoys": w["decoys"],
            "counts": {k: len(w[k]) for k in (*FILES, "questions", "dev_questions")},
            **({"chunk_tokenizer": getattr(tok, "name", "characters")} if cfg.shape == "prose" else {})}
    write_json(os.path.join(out, "world.json"), meta)
    return meta


def build_parser():
    ap = argparse.ArgumentParser(prog="python -m data.world", description="Write the built-in table world (see "
                                 "data/world.py).")
    ap.add_argument("--out", default="out/world", help="output directory (default: 'out/world')")
    return add_flags(ap, WorldConfig)


def main(argv=None):
    ap = build_parser()
    ap.error = parser_error  # one line, exit code 2 (below), not argparse's usage block
    try:
        args = ap.parse_args(argv)
        cfg = WorldConfig(**{k: getattr(args, k) for k in asdict(WorldConfig())})
        errors = [e for e in (*check(cfg), out_dir_error(args.out)) if e]
        if errors:
            raise ValueError("; ".join(errors))
        meta = write(cfg, args.out)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in meta["counts"].items()))


if __name__ == "__main__":
    main()
