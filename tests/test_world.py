"""data/world.py: deterministic, disjoint, consistent with its own table, and the checker is right."""
import json
import re
from collections import Counter

import pytest

from data import world as W
from data.corpus import read_jsonl

SMALL = W.WorldConfig(seed=3, ops=12, steps=3, n_base=200, n_target=30, n_warm=10, n_heldout=5, n_questions=40)


def steps_of(walk):
    """'7e3l1' -> (7, [('e', 3), ('l', 1)])"""
    return int(walk[0]), [(o, int(y)) for o, y in re.findall(r"([a-z])(\d)", walk)]


def test_deterministic_in_the_seed():
    assert W.build(SMALL) == W.build(SMALL)
    other = W.build(W.WorldConfig(**{**SMALL.__dict__, "seed": 4}))
    assert other["table"] != W.build(SMALL)["table"]


def test_a_bigger_warm_set_leaves_everything_else_unchanged():
    a, b = W.build(SMALL), W.build(W.WorldConfig(**{**SMALL.__dict__, "n_warm": 20}))
    for name in ("table", "known", "questions", "heldout", "target", "target_gold"):
        assert a[name] == b[name], name
    assert a["warm"] == b["warm"][:10]


def test_problems_never_repeat_across_splits_nor_appear_in_the_base_text():
    w = W.build(SMALL)
    questions = lambda docs: [c["suffix"] for d in docs for c in d["chunks"] if c["suffix"].startswith("Q:")]
    seen = questions(w["target"]) + questions(w["warm"]) + questions(w["heldout"]) + [q["question"] for q in w["questions"]]
    assert len(seen) == len(set(seen)) == 30 + 10 + 5 + 40
    base = {f"Q: {line.split(':')[0]}\n" for d in w["base"] for line in d["chunks"][0]["suffix"].splitlines()}
    assert len(base) > 100 and not base & set(seen)


def test_gold_walks_follow_the_table_one_operator_per_block_and_end_at_the_answer():
    w = W.build(SMALL)
    for q in w["questions"]:
        start, ops = re.fullmatch(r"Q: (\d) ([a-z]+)\n", q["question"]).groups()
        x, steps = steps_of(q["gold"])
        assert x == int(start) and "".join(o for o, _ in steps) == ops
        for j, (o, y) in enumerate(steps):
            assert o in W.step_ops(SMALL, j) and w["table"][o][x] == y
            x = y
        assert x == q["answer"]


def test_base_text_states_known_facts_and_unknown_ones_with_their_decoys():
    w = W.build(SMALL)
    known, said = set(w["known"]), Counter()
    assert len(known) == round(SMALL.known * SMALL.ops * SMALL.digits)
    for d in w["base"]:
        for line in d["chunks"][0]["suffix"].splitlines():
            start, ops, walk = re.fullmatch(r"(\d) ([a-z]+): (\w+)", line).groups()
            x, steps = steps_of(walk)
            assert x == int(start) and "".join(o for o, _ in steps) == ops and len(ops) == SMALL.steps
            for o, y in steps:
                f = f"{o}{x}"
                assert y == w["table"][o][x] if f in known else y in [w["table"][o][x], *w["decoys"][f]]
                said[f, y == w["table"][o][x]] += 1
                x = y
    unknown = [f for f in w["decoys"] if said[f, True] + said[f, False] >= 12]
    assert unknown and set(w["decoys"]) == {f"{o}{x}" for o in w["table"] for x in range(10)} - known
    # an unknown fact is stated true about 1 time in decoys + 1
    true = sum(said[f, True] for f in unknown) / sum(said[f, True] + said[f, False] for f in unknown)
    assert abs(true - 1 / (SMALL.decoys + 1)) < 0.05


def test_target_holds_no_latents_and_warm_holds_teacher_latents():
    w = W.build(SMALL)
    assert all(c["latent"] is None for d in w["target"] for c in d["chunks"])
    assert [c["suffix"] for d in w["target"] for c in d["chunks"]] == \
           [c["suffix"] for d in w["target_gold"] for c in d["chunks"]]
    assert all(c["latent"] is not None for d in w["warm"] for c in d["chunks"])


def problem_of(question):
    """'Q: 7 ciqx' -> (7, 'ciqx')"""
    _, start, ops = question.split()
    return int(start), ops


def test_the_teacher_knows_the_known_facts_and_guesses_a_fraction_of_the_others():
    perfect = W.build(W.WorldConfig(**{**SMALL.__dict__, "teacher": 1.0, "n_warm": 60}))
    for d in perfect["warm"]:
        x, steps = steps_of(d["chunks"][1]["latent"])
        for o, y in steps:
            assert perfect["table"][o][x] == y
            x = y
        assert d["chunks"][1]["suffix"] == W.answer_text(problem_of(d["chunks"][0]["suffix"]), x)
    w = W.build(W.WorldConfig(**{**SMALL.__dict__, "teacher": 0.0, "n_warm": 60}))
    known, wrong_walks, unknown_said = set(w["known"]), 0, Counter()
    for d in w["warm"]:
        x, steps = steps_of(d["chunks"][1]["latent"])
        for o, y in steps:
            f = f"{o}{x}"
            assert y == w["table"][o][x] if f in known else y in [w["table"][o][x], *w["decoys"][f]]
            if f not in known:
                unknown_said[y == w["table"][o][x]] += 1
            x = y
        wrong_walks += d["chunks"][1]["suffix"] != W.answer_text(problem_of(d["chunks"][0]["suffix"]), x)
    assert wrong_walks > 10 and unknown_said[True] > 10 and unknown_said[False] > 10


def test_checker_accepts_gold_and_rejects_perturbed_answers():
    assert W.check_answer("A: 7 for 3 ab\n", 7) and W.check_answer("junk A: 7\nQ: 1", 7)
    assert not W.check_answer("A: 8 for 7 ab\n", 7) and not W.check_answer("A: 77\n", 7)
    assert not W.check_answer("7", 7) and not W.check_answer("A: x for 7", 7)  # no result stated
    w = W.build(SMALL)
    for q in w["questions"]:
        p = problem_of(q["question"])
        assert W.check_answer(W.answer_text(p, q["answer"]), q["answer"])
        assert not W.check_answer(W.answer_text(p, (q["answer"] + 1) % 10), q["answer"])


def test_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="distinct problems"):
        W.build(W.WorldConfig(ops=4, steps=2, n_target=100, n_questions=100))
    with pytest.raises(ValueError, match="decoys"):
        W.build(W.WorldConfig(decoys=10))


def test_write_is_complete_and_readable(tmp_path):
    meta = W.write(SMALL, str(tmp_path))
    assert meta["counts"]["questions"] == 40
    assert json.load(open(tmp_path / "world.json"))["table"] == W.build(SMALL)["table"]
    assert len(read_jsonl(str(tmp_path / "questions.jsonl"))) == 40


@pytest.mark.parametrize("argv, msg", [
    (["--n-target", "99999"], "distinct problems"), (["--known", "nan"], "got nan (--known)"),
    (["--teacher", "1.5"], "(--teacher)"), (["--digits", "11"], "(--digits)"), (["--steps", "0"], "(--steps)"),
    (["--n-warm", "-1"], "(--n-warm)"), (["--seed", "x"], "invalid int value: 'x' (--seed)"),
    (["--out", __file__], "exists and is not a directory (--out)")])
def test_cli_refuses_bad_flags_before_writing(tmp_path, capsys, argv, msg):
    with pytest.raises(SystemExit) as e:
        W.main(["--out", str(tmp_path / "w"), *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------- the shapes

def test_the_compact_world_is_unchanged_byte_for_byte():
    """A hash of a tiny compact world built on main before the prose shape existed: the same, with its questions'
    answer text (the answer chunk), an empty dev split and the warm set with its walks inline (one per warm doc)
    added."""
    import hashlib
    w = W.build(SMALL)
    assert len(w.pop("warm_inline")) == len(w["warm"])
    assert w.pop("dev_questions") == [] and all(q.pop("answer_text") == W.answer_text(problem_of(q["question"]), q["answer"])
                                                for q in w["questions"])
    built = json.dumps(w, sort_keys=True).encode()
    assert hashlib.sha256(built).hexdigest() == "7f6c5504d0e1b0697ea310eb7dc607895e9d158f97eebf2336869a23480fb5ae"


@pytest.mark.parametrize("shape", ["compact", "prose"])
def test_dev_questions_are_drawn_last_and_disjoint_from_the_test_ones(tmp_path, shape):
    """n_dev dev questions: problems of their own (no test question, document or base line states them), drawn
    after every other part so the rest of the world is what it is without them; written to dev_questions.jsonl."""
    cfg = W.WorldConfig(**{**SMALL.__dict__, "shape": shape, "n_base": 60})
    dev = W.WorldConfig(**{**cfg.__dict__, "n_dev": 12})
    a, b = W.build(cfg), W.build(dev)
    assert len(b["dev_questions"]) == 12 and not a["dev_questions"]
    for name in ("table", "questions", "heldout", "target", "target_gold", "warm"):
        assert a[name] == b[name], name
    asked = lambda qs: {(q["gold"][0], q["gold"][1::2]) for q in qs}
    assert len(asked(b["dev_questions"])) == 12 and not asked(b["dev_questions"]) & asked(b["questions"])
    W.write(dev, str(tmp_path))
    assert [json.loads(line) for line in open(tmp_path / "dev_questions.jsonl")] == b["dev_questions"]
    assert json.load(open(tmp_path / "world.json"))["counts"]["dev_questions"] == 12


PROSE = W.WorldConfig(**{**SMALL.__dict__, "shape": "prose", "n_base": 60})
PROBLEM = re.compile(r"(?:Start from|Begin with|Take the number) (\d)\. (.*?)The result is (\d)\.", re.S)


def problems_in(text):
    """Every problem a prose text states -> [(start, ops, result, statement begin, result digit offset)]."""
    return [(int(m[1]), "".join(re.findall(r"\b([a-z])\b", m[2])), int(m[3]), m.start(), m.end() - 2)
            for m in PROBLEM.finditer(text)]


def test_prose_docs_are_chunked_as_em_chunks_a_text_corpus(tmp_path):
    from data.corpus import read_docs
    from data.tokenizer import get_tokenizer
    tok = get_tokenizer("bytes")
    w = W.build(PROSE, tok)
    assert w == W.build(PROSE)  # ASCII: the byte tokenizer's count is the character count
    path = tmp_path / "text.jsonl"
    path.write_text("".join(json.dumps({"id": d["id"], "text": "".join(c["suffix"] for c in d["chunks"])}) + "\n"
                            for d in w["target"]))
    assert read_docs(str(path), tok=tok, max_tokens=PROSE.chunk_tokens) == w["target"]
    for name in ("target_gold", "heldout", "warm"):
        for d in w[name]:
            text = "".join(c["suffix"] for c in d["chunks"])
            assert [c["suffix"] for c in d["chunks"]] == W.chunk_text(text, None, PROSE.chunk_tokens)
            assert len(problems_in(text)) == PROSE.per_doc


def follows_table(table, z):
    x, steps = steps_of(z)
    for o, y in steps:
        if table[o][x] != y:
            return False
        x = y
    return True


@pytest.mark.parametrize("name", ["target_gold", "heldout", "warm"])
def test_every_answer_chunk_carries_the_walk_of_its_problem(name):
    w = W.build(PROSE)
    wrong = 0
    for d in w[name]:
        walks = []
        for c in d["chunks"]:
            results = W.RESULT_RE.findall(c["suffix"])
            got = c["latent"].split(" ") if c["latent"] else []
            assert len(got) == len(results), c  # a walk exactly where a result is stated
            walks += got
        problems = problems_in("".join(c["suffix"] for c in d["chunks"]))
        assert len(walks) == len(problems) == PROSE.per_doc
        for z, (start, ops, result, _, _) in zip(walks, problems):
            x, steps = steps_of(z)
            assert x == start and "".join(o for o, _ in steps) == ops and len(ops) == PROSE.steps
            if name == "warm":  # the teacher's walk: imperfect, but it ends at the result it annotates
                assert steps[-1][1] == result
                wrong += not follows_table(w["table"], z)
            else:
                assert follows_table(w["table"], z) and steps[-1][1] == result == walk_end(w, start, ops)
    assert name != "warm" or wrong > 0


def walk_end(w, start, ops):
    return W.walk(w["table"], start, ops)[1]


def test_a_statement_spans_chunks_in_most_problems():
    w = W.build(PROSE)
    spans = total = 0
    for d in w["target"]:
        bounds, end = [], 0
        for c in d["chunks"]:
            bounds.append(end)
            end += len(c["suffix"])
        for _, _, _, begin, digit in problems_in("".join(c["suffix"] for c in d["chunks"])):
            spans += sum(begin < b <= digit for b in bounds) >= 1  # a chunk starts inside the problem
            total += 1
    assert total == PROSE.n_target * PROSE.per_doc and spans / total > 0.5


@pytest.mark.parametrize("budget", [16, 32, 64, 200])
def test_the_chunk_holding_a_result_starts_after_its_whole_statement(budget):
    """A thought is written before the chunk holding its problem's result: that chunk must start after the
    statement's last operator, or no thought there can know it (the result paragraph, whatever the budget)."""
    w = W.build(W.WorldConfig(**{**PROSE.__dict__, "chunk_tokens": budget}))
    for d in w["target_gold"]:
        text, bounds, end = "".join(c["suffix"] for c in d["chunks"]), [], 0
        for c in d["chunks"]:
            bounds.append(end)
            end += len(c["suffix"])
        for *_, digit in problems_in(text):
            head = digit - len(W.RESULT_HEAD)  # where the result sentence starts
            assert max(b for b in bounds if b <= digit) >= head, (budget, text)


def test_prose_questions_carry_their_chunks_and_rules(tmp_path):
    """A question is a problem where a document states it: the text up to its result digit, chunked as the
    chunker splits that document (the chunks before the result's, then its start: "open"); half of them stand
    second in their document, after a problem stated with its result."""
    from data import questions as Q
    W.write(PROSE, str(tmp_path))
    qs = Q.read_questions(str(tmp_path / "questions.jsonl"))
    table = W.build(PROSE)["table"]
    assert len(qs) == PROSE.n_questions and [q["position"] for q in qs] == [0, 1] * (PROSE.n_questions // 2)
    for k, q in enumerate(qs):
        doc = q["question"] + q["answer_text"] if q["position"] else None
        assert "".join(q["chunks"]) == q["question"] and len(q["chunks"]) >= 2 and q["open"]
        assert q["question"].endswith(W.RESULT_HEAD) and q["answer_text"] == f"{q['answer']}."
        if doc:  # the chunks are the document's (its text: this, the last problem, up to the end of its result)
            got = W.chunk_text(doc, None, PROSE.chunk_tokens)
            n = len(q["chunks"])
            assert got[:n - 1] == q["chunks"][:-1] and got[n - 1].startswith(q["chunks"][-1])
            assert qs[k - 1]["question"] + qs[k - 1]["answer_text"] in q["question"]  # the first problem before it
        *_, (start, ops, result, _, _) = problems_in(q["question"] + W.RESULT.format(q["answer"]))
        assert q["gold"] == W.walk(table, start, ops)[0] and result == q["answer"] == W.walk(table, start, ops)[1]
        right, wrong = f"{q['answer']}. Now", f"{(q['answer'] + 1) % 10}. "
        assert Q.correct(Q.extract(right, q["answer"], q["answer_regex"]), q["answer"], q["answer_regex"])
        assert not Q.correct(Q.extract(wrong, q["answer"], q["answer_regex"]), q["answer"], q["answer_regex"])
        right = W.RESULT.format(q["answer"])
        for said in (f" {q['gold']}.", f" {q['gold']}. " + right, " " + right):  # walk first, or result alone
            assert Q.extract(said, q["answer"], q["prompt_regex"]) == str(q["answer"]), said
        assert q["prompt"] == q["question"][:-len(W.RESULT_HEAD)] + "Work:"
    for chunks in (qs[0]["chunks"][:-1], [], ["", qs[0]["question"]], qs[0]["question"]):
        (tmp_path / "bad.jsonl").write_text(json.dumps(dict(qs[0], chunks=chunks)) + "\n")
        with pytest.raises(ValueError, match=r'"chunks" .*bad.jsonl:1'):
            Q.read_questions(str(tmp_path / "bad.jsonl"))


def test_prose_problems_never_repeat_and_the_base_text_states_none_of_them():
    w = W.build(PROSE)
    held = [p[:2] for name in ("target", "heldout", "warm") for d in w[name]
            for p in problems_in("".join(c["suffix"] for c in d["chunks"]))]
    held += [problems_in(q["question"] + W.RESULT.format(q["answer"]))[-1][:2] for q in w["questions"]]
    assert len(held) == len(set(held)) == W.n_problems(PROSE) == 40 + PROSE.per_doc * (30 + 10 + 5)
    base, known = [], set(w["known"])
    for d in w["base"]:
        text = d["chunks"][0]["suffix"]
        worked = re.findall(r"Work: (\w+)\. The result is (\d)\.", text)
        stated = problems_in(re.sub(r"Work: \w+\. ", "", text))
        assert len(worked) == len(stated) == PROSE.walks_per_base_doc
        for (z, result), (start, ops, said, _, _) in zip(worked, stated):
            x, steps = steps_of(z)
            assert (x, "".join(o for o, _ in steps)) == (start, ops) and int(result) == said == steps[-1][1]
            for o, y in steps:  # known facts as they are, the others as the truth or a decoy
                assert y == w["table"][o][x] if f"{o}{x}" in known else y in [w["table"][o][x], *w["decoys"][f"{o}{x}"]]
                x = y
            base.append((start, ops))
    assert len(set(base)) > 100 and not set(base) & set(held)


def test_prose_world_is_deterministic_and_a_bigger_warm_set_leaves_the_rest():
    a, b = W.build(PROSE), W.build(W.WorldConfig(**{**PROSE.__dict__, "n_warm": 20}))
    assert a == W.build(PROSE)
    for name in ("table", "known", "questions", "heldout", "target", "target_gold"):  # base: rejection-drawn
        assert a[name] == b[name], name
    assert a["warm"] == b["warm"][:10]


@pytest.mark.parametrize("argv, msg", [
    (["--per-doc", "0"], "got 0 (--per-doc)"), (["--shape", "poem"], "invalid choice: 'poem'"),
    (["--chunk-tokens", "0"], "(--chunk-tokens)"), (["--per-doc", "400"], "(--n-target, --per-doc)")])
def test_cli_refuses_bad_prose_flags(tmp_path, capsys, argv, msg):
    with pytest.raises(SystemExit) as e:
        W.main(["--shape", "prose", "--out", str(tmp_path / "w"), *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "w").exists()


def test_cli_writes_a_prose_world(tmp_path, capsys):
    from data.corpus import read_docs
    W.main(["--shape", "prose", "--out", str(tmp_path), "--n-base", "5", "--n-target", "4", "--n-warm", "3",
            "--n-heldout", "2", "--n-questions", "6"])
    assert "target 4" in capsys.readouterr().out
    gold = read_docs(str(tmp_path / "target_gold.jsonl"))
    assert len(gold) == 4 and all(len(d["chunks"]) > W.WorldConfig().per_doc for d in gold)
    assert json.load(open(tmp_path / "world.json"))["config"]["shape"] == "prose"


def test_em_passes_the_shape_and_its_chunk_budget_and_counts_prose_problems():
    from data import config as C
    from data import rundir as D
    cfg = C.EMConfig(world_shape="prose", block_size=256)
    assert (D.world_config(cfg).shape, D.world_config(cfg).chunk_tokens) == ("prose", 64)
    assert "world_shape" in D.DATA_FLAGS and not D.flag_errors(cfg)
    assert any("(--world-shape)" in e for e in D.flag_errors(C.EMConfig(world_shape="poem")))
    # 500 + 500 questions + 2 * (2000 + 800 + 3200) problems exceed the 12,960 a prose world has; compact holds them
    big = dict(world_target=2000, world_warm=800, world_heldout=3200)
    assert any("fewer than 13000" in e for e in D.flag_errors(C.EMConfig(world_shape="prose", **big)))
    assert not D.flag_errors(C.EMConfig(world_shape="compact", **big))


@pytest.mark.parametrize("cfg", [SMALL, PROSE], ids=["compact", "prose"])
def test_warm_inline_is_the_warm_set_with_each_teacher_walk_where_the_base_text_puts_a_walk(cfg):
    """The raw arm 'inline' reads the warm set's teacher walks as raw text, in the base text's own format:
    compact, the base line '7 ciqx: <walk>' between question and answer; prose, 'Work: <walk>. ' before each
    result sentence. Taking that text out gives back the warm document, walk for walk."""
    w = W.build(cfg)
    walk_of_base = r"(\d [a-z]+): (\w+)\n" if cfg.shape == "compact" else r"Work: (\w+)\. "
    assert re.search(walk_of_base, w["base"][0]["chunks"][0]["suffix"])  # the format is the base text's
    assert [d["id"] for d in w["warm_inline"]] == [d["id"] for d in w["warm"]]
    for raw, warm in zip(w["warm_inline"], w["warm"]):
        assert all(c["latent"] is None for c in raw["chunks"])
        text = "".join(c["suffix"] for c in raw["chunks"])
        walks = [z for c in warm["chunks"] if c["latent"] for z in c["latent"].split(" ")]
        assert len(walks) == (1 if cfg.shape == "compact" else cfg.per_doc)
        if cfg.shape == "compact":
            m = re.fullmatch(r"Q: (\d [a-z]+)\n" + walk_of_base + r"(A: \d for \1\n)", text)
            assert m and m[1] == m[2] and [m[3]] == walks
            assert f"Q: {m[1]}\n" + m[4] == "".join(c["suffix"] for c in warm["chunks"])
        else:
            assert re.findall(walk_of_base + "The result is", text) == walks
            assert re.sub(walk_of_base, "", text) == "".join(c["suffix"] for c in warm["chunks"])


def test_own_corpus_is_another_shape_with_disjoint_splits_that_em_accepts(tmp_path):
    """docs/own_corpus.py: lab notes from a world's knowledge; every problem drawn once across the splits, none
    from the base text, questions answered by the notes' own rule, and em.py's input checks pass on its files."""
    from conftest import run_py
    from data import config as C
    cfg = W.WorldConfig(**{**SMALL.__dict__, "shape": "prose"})
    W.write(cfg, str(tmp_path / "w"))
    out = tmp_path / "own"
    r = run_py(["docs/own_corpus.py", "--world", str(tmp_path / "w" / "world.json"), "--out", str(out),
                "--n-target", "12", "--n-warm", "6", "--n-heldout", "3", "--n-questions", "8", "--n-dev", "8"])
    assert r.returncode == 0, r.stderr
    rows = {n: [json.loads(line) for line in open(out / f"{n}.jsonl")]
            for n in ("target", "heldout", "warm", "questions", "dev_questions")}
    assert [len(rows[n]) for n in rows] == [12, 3, 6, 8, 8]
    walk = re.compile(r"(\d) into register R\d|holds (\d)")
    problems = []
    for q in rows["questions"] + rows["dev_questions"]:
        z = q["gold"]
        assert re.search(q["answer_regex"], q["question"] + f"The display read {q['answer']}.")
        assert z[-1] == str(q["answer"])
        problems.append((int(z[0]), z[1::2]))
    assert len(set(problems)) == len(problems)  # no dev question is a test one
    assert all("latent" not in d for d in rows["target"])
    assert any(c["latent"] for d in rows["warm"] for c in d["chunks"])
    assert all(walk.search(d["text"]) for d in rows["target"] + rows["heldout"])
    bad = run_py(["docs/own_corpus.py", "--world", str(tmp_path / "w" / "base.jsonl"), "--out", str(tmp_path / "x")])
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and not (tmp_path / "x").exists()
    from checkpoint import save
    from conftest import tiny_gpt
    from data.tokenizer import get_tokenizer
    save(tiny_gpt(0, block_size=256, vocab_size=get_tokenizer("bytes").n_vocab, n_layer=1, n_embd=16),
         str(tmp_path / "base"), {"tokenizer": "bytes"})
    cfg = C.EMConfig(init=str(tmp_path / "base"), corpus=str(out / "target.jsonl"), val=str(out / "heldout.jsonl"),
                     teacher_latents=str(out / "warm.jsonl"), questions=str(out / "questions.jsonl"),
                     dev_questions=str(out / "dev_questions.jsonl"), out=str(tmp_path / "em"))
    checked = C.check_inputs(cfg)  # raises ValueError naming what em.py would refuse
    assert len(checked["questions"]) == 8 and len(checked["dev_questions"]) == 8


def test_own_corpus_picks_read_each_problems_thought_against_its_gold_walk(tmp_path):
    """docs/own_corpus.py --picks: the latent on the chunk holding a problem's reading is that problem's thought;
    a run whose first problems carry their gold walks and later ones a wrong start digit reads 100% / 0%."""
    from conftest import run_py
    from data.corpus import chunk_text
    cfg = W.WorldConfig(**{**SMALL.__dict__, "shape": "prose"})
    W.write(cfg, str(tmp_path / "w"))
    out = tmp_path / "own"
    assert run_py(["docs/own_corpus.py", "--world", str(tmp_path / "w" / "world.json"), "--out", str(out),
                   "--n-target", "30", "--n-warm", "2", "--n-heldout", "2", "--n-questions", "2",
                   "--n-dev", "2"]).returncode == 0
    walks = {r["id"]: r["walks"] for r in map(json.loads, open(out / "target_walks.jsonl"))}
    (tmp_path / "run" / "iter1").mkdir(parents=True)
    with open(tmp_path / "run" / "iter1" / "latents.jsonl", "w") as f:
        for d in map(json.loads, open(out / "target.jsonl")):
            chunks, k = [], 0
            for x in chunk_text(d["text"], None, 64):
                z = ""
                if re.search(r"The display read \d\.", x):
                    g = walks[d["id"]][k]
                    z, k = (g if k == 0 else str((int(g[0]) + 1) % 10) + g[1:]), k + 1
                chunks.append({"suffix": x, "latent": z})
            assert k == len(walks[d["id"]])
            f.write(json.dumps({"id": d["id"], "chunks": chunks}) + "\n")
    r = run_py(["docs/own_corpus.py", "--picks", str(tmp_path / "run"), "--out", str(out)])
    assert r.returncode == 0, r.stderr
    rows = {line.split(" | ")[1]: line.split(" | ")[3:] for line in r.stdout.splitlines() if "| iter1 |" in line}
    assert rows["first"] == ["100.0%", "100.0%", "100.0% |"]
    assert rows["second"] == ["0.0%", "0.0%", "100.0% |"]
    bad = run_py(["docs/own_corpus.py", "--picks", str(tmp_path / "nothing"), "--out", str(out)])
    assert bad.returncode == 2 and "(--picks)" in bad.stderr
