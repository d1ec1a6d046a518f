"""em.py: importance weights on a hand-built case, keyed resampling, and the loop end to end (quick preset),
including resume after a kill, torchrun with 2 ranks, and the real-model path (HF GPT-2 dir + gpt2 BPE)."""
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

import em
from accuracy import eval_questions
from checkpoint import save
from conftest import ROOT, check_bounds, estep_docs, marks_gpt, run_py, tiny_gpt
from data import config as C
from data import report as R
from data import rundir, runs
from data.corpus import sha256_file
from data.shards import open_shards
from data.tokenizer import get_tokenizer

TINY = ["--quick", "--iters", "2", "--k", "2", "--world-target", "24", "--world-warm", "16", "--world-heldout", "4",
        "--world-questions", "16", "--world-dev", "8", "--base-steps", "30", "--warm-steps", "10", "--m-steps", "10",
        "--oracle"]


def run_em(args, env=None, **kw):
    return run_py(["em.py", *args], env={"OMP_NUM_THREADS": "1", **(env or {})}, **kw)


def test_importance_weights_are_log_p_minus_log_q(monkeypatch, tmp_path):
    """Fake generate/score with known log-probs: log w must be log p - log q, and resampling must follow
    softmax(log w) (a sample with overwhelming weight is always picked; ties are picked evenly)."""
    tok = get_tokenizer("bytes")
    K = 3
    fake_q = [-1.0, -2.0, -3.0]  # summed log q per sample
    fake_p = [-50.0, -2.0, -60.0]  # log p: sample 1 has log w = 0, the others about -49 and -57

    def fake_generate(model, prompts, max_new, stop_tokens=(), **kw):
        return [{"tokens": [tok.encode("z")[0] + i % K, tok.eol], "logprobs": [fake_q[i % K], 0.0],
                 "raw_logprobs": [0.0, 0.0], "stopped": True} for i in range(len(prompts))]

    def fake_score(model, prefixes, conts, batch_size=64):  # SoL, PRIOR (layout marks, not scored), then Z EoL X
        return [{"sum": -0.7 - 5.0 + fake_p[i % K], "logprobs": [-0.7, -5.0, fake_p[i % K]]}
                for i in range(len(prefixes))]

    monkeypatch.setattr(em, "generate", fake_generate)
    monkeypatch.setattr(em, "score", fake_score)
    cfg = C.EMConfig(k=K, max_latent=8, block_size=64)
    docs = [{"id": f"d{i}", "chunks": [{"suffix": "abc", "latent": None}, {"suffix": "de", "latent": None}]}
            for i in range(5)]
    new, rows = estep_docs(None, tok, cfg, docs, 1, str(tmp_path / "units"))
    assert len(rows) == 10
    for r in rows:
        assert r["log_w"] == pytest.approx([p - q for p, q in zip(fake_p, fake_q)])
        assert r["pick"] == 1
    assert all(c["latent"] == tok.decode([tok.encode("z")[0] + 1]) for d in new for c in d["chunks"])
    # ties: picks spread over all samples, and are a pure function of the key
    picks = [em.resample([0.0, 0.0, 0.0], (0, 1, "doc", c)) for c in range(300)]
    assert {picks.count(j) for j in range(3)} and min(picks.count(j) for j in range(3)) > 60
    assert picks == [em.resample([0.0, 0.0, 0.0], (0, 1, "doc", c)) for c in range(300)]
    assert em.ess([0.0, 0.0, 0.0]) == pytest.approx(3.0) and em.ess([0.0, -100.0]) == pytest.approx(1.0)


def toy_em(monkeypatch, tmp_path, iters=3, k=4, seed=0):
    """EM on a toy world with a tabular model in place of the GPT, the E-step em.py's own (em.estep: keyed
    posterior samples, importance weights, resampling, sequential context, units). The model's belief about each
    fact (op, x) -> value starts as the base text states it (known facts certain, the others the true value or a
    decoy, equally likely); the posterior q samples a walk of the answer chunk's problem from it, the joint p
    scores the walk by the belief and the stated answer by where the walk ends (0.97 if there); each M-step
    starts from the base belief and adds the facts of the chosen walks (the fresh M-step). -> accuracy on the
    held-out questions (the chance a walk the model samples is right) at the start and after each iteration."""
    from collections import Counter
    from data import world as W
    tok = get_tokenizer("bytes")
    cfg_w = W.WorldConfig(seed=seed, ops=10, steps=2, n_base=1, n_target=150, n_warm=1, n_heldout=1, n_questions=90)
    w = W.build(cfg_w)
    table, known = w["table"], set(w["known"])
    base = {(o, x): Counter({table[o][x]: 1}) if f"{o}{x}" in known else
            Counter({v: 1 for v in [table[o][x], *w["decoys"][f"{o}{x}"]]}) for o in table for x in range(10)}
    belief = base
    prob = lambda o, x, v: belief[o, x][v] / sum(belief[o, x].values())
    prob_text = lambda ids: tok.decode([t for t in ids if t not in tok.special_ids])

    def parse(x_text):  # 'A: 3 for 7 ab\n' -> (answer, start, ops); a question chunk -> None
        m = re.fullmatch(r"A: (\d) for (\d) ([a-z]+)\n", x_text)
        return m and (int(m[1]), int(m[2]), m[3])

    def fake_generate(model, prompts, max_new, stop_tokens=(), ids=None, **kw):
        outs = []
        for p, i in zip(prompts, ids):
            at = max(j for j in range(len(p) - 1) if p[j:j + 2] == [tok.sol, tok.eol])
            prob_x = parse(prob_text(p[at + 2:-2]))
            z, lq, rng = "", 0.0, random.Random(i)
            if prob_x:
                _, x, ops = prob_x
                z = str(x)
                for o in ops:
                    vals = sorted(belief[o, x])
                    v = rng.choices(vals, [prob(o, x, u) for u in vals])[0]
                    lq, x, z = lq + math.log(prob(o, x, v)), v, z + f"{o}{v}"
            outs.append({"tokens": tok.encode(z) + [tok.eol], "logprobs": [lq], "raw_logprobs": [lq],
                         "stopped": True})
        return outs

    def fake_score(model, prefixes, conts, batch_size=64):
        out = []
        for c in conts:
            e = c.index(tok.eol)
            z, prob_x = prob_text(c[2:e]), parse(prob_text(c[e + 1:]))
            lp = 0.0
            if prob_x:
                answer, x, ops = prob_x
                steps = re.findall(r"([a-z])(\d)", z)
                if z[:1] != str(x) or "".join(o for o, _ in steps) != ops:
                    lp = -50.0  # not a walk of this problem
                else:
                    for o, v in steps:
                        lp, x = lp + math.log(max(prob(o, x, int(v)), 1e-9)), int(v)
                    lp += math.log(0.97 if x == answer else 0.03 / 9)
            out.append({"sum": lp, "logprobs": [0.0, 0.0, lp]})
        return out
    monkeypatch.setattr(em, "generate", fake_generate)
    monkeypatch.setattr(em, "score", fake_score)

    def accuracy():  # the chance that a walk the model samples for a held-out question is right
        right = 0.0
        for q in w["questions"]:
            x, ops = problem_of(q["question"])
            p = 1.0
            for o in ops:
                p, x = p * prob(o, x, table[o][x]), table[o][x]
            right += p
        return right / len(w["questions"])
    cfg = C.EMConfig(k=k, max_latent=16, block_size=128)
    accs = [accuracy()]
    for it in range(1, iters + 1):
        _, rows = estep_docs(None, tok, cfg, w["target"], it, str(tmp_path / f"units{it}"))
        counts = {f: Counter(c) for f, c in base.items()}
        for r in rows:  # a walk "7a3b5": facts (a, 7) -> 3, (b, 3) -> 5
            z = r["latent"] or ""
            for (o, v), x in zip(re.findall(r"([a-z])(\d)", z), re.findall(r"(\d)[a-z]", z)):
                counts[o, int(x)][int(v)] += 1
        belief = counts
        accs.append(accuracy())
    return accs


def problem_of(question):
    _, start, ops = question.split()
    return int(start), ops


def test_em_on_a_toy_world_learns_what_its_answers_check(monkeypatch, tmp_path):
    """EM learns: on the toy world (toy_em) the E-step's resampled walks teach the facts the stated answers check,
    and the held-out accuracy rises by a margin at every iteration; resampling that ignores the weights (a
    uniform pick) learns nothing, so the margin is the weights' doing."""
    accs = toy_em(monkeypatch, tmp_path / "em")  # seeds 0-4: 0.42-0.49 at the start, +0.14 to +0.19 at the end
    assert all(b > a + 0.01 for a, b in zip(accs, accs[1:])) and accs[-1] > accs[0] + 0.12, accs
    monkeypatch.setattr(em, "resample", lambda log_w, key: random.Random(em.key_int(*key)).randrange(len(log_w)))
    blind = toy_em(monkeypatch, tmp_path / "uniform")  # seeds 0-4: within 0.04 of the start
    assert all(abs(b - blind[0]) < 0.06 for b in blind) and accs[-1] > blind[-1] + 0.1, (accs, blind)


def test_iw_elbo_logsumexp_matches_math():
    xs = [-1000.0, -1001.0, -999.5]
    assert em.iw_elbo(xs) + math.log(3) == pytest.approx(math.log(sum(math.exp(x + 1000) for x in xs)) - 1000)


def test_bad_flags_are_one_line_errors(tmp_path):
    r = run_em(["--k", "0", "--out", str(tmp_path / "o")])
    assert r.returncode == 2 and r.stderr == "error: must be >= 1, got 0 (--k)\n" and not (tmp_path / "o").exists()
    r = run_em(["--corpus", str(tmp_path / "missing.jsonl")])
    assert r.returncode == 2 and "missing.jsonl: no such file or directory (--corpus)" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.slow
def test_quick_end_to_end_and_resume_after_kill(tmp_path):
    out = tmp_path / "run"
    r = run_em([*TINY, "--out", str(out)], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ("report.md", "metrics.jsonl", "plot.svg", "iter2/latents.jsonl", "iter1/estep.json"):
        assert (out / f).exists(), f
    metrics = [json.loads(l) for l in open(out / "metrics.jsonl")]
    names = [m["name"] for m in metrics]
    assert names[:3] == ["warm start", "BoLT iter 1", "BoLT iter 2"] and any("oracle" in n for n in names)
    assert all(m["n_questions"] == 16 and m["dev_n_questions"] == 8 for m in metrics)
    assert [m.get("baseline") for m in metrics][3:] == ["base", "raw_inline", "oracle"]
    for m in metrics:
        rows = [json.loads(line) for line in open(out / R.phase_dir(m) / "eval_questions.jsonl")]
        for split, pre in (("test", ""), ("dev", "dev_")):
            mode = [r for r in rows if r["split"] == split and r["mode"] in ("latent", "direct")]
            assert m[f"{pre}acc"] == sum(r["correct"] for r in mode) / len(mode), (m["name"], split)
    check_bounds(out, metrics)
    # every target chunk got a latent drawn from the model; no gold latent can reach the E-step input
    target = [json.loads(l) for l in open(out / "data/target.jsonl")]
    assert all(c["latent"] is None for d in target for c in d["chunks"])
    assert "<svg" in (out / "plot.svg").read_text()
    # gold diagnostics count the answer chunks only (the question chunk's empty latent is no match), and the
    # E-step can only pick the gold latent when one of its K samples is it
    diag = json.loads((out / "iter1/estep.json").read_text())
    assert diag["gold_chunks"] == len(target) and diag["gold_match"] <= diag["gold_exists"]
    assert diag["gold_match"] <= diag["gold_steps"]  # an exact match follows the steps too
    gold = [json.loads(l) for l in open(out / "data/target_gold.jsonl")]
    chosen = [json.loads(l) for l in open(out / "iter1/latents.jsonl")]
    pairs = [(c["latent"], g["latent"]) for dc, dg in zip(chosen, gold) for c, g in zip(dc["chunks"], dg["chunks"])
             if g["latent"]]
    assert diag["gold_match"] == pytest.approx(sum(a == b for a, b in pairs) / len(pairs))

    # kill a second run mid-way (after the first E-step unit exists), re-run: same metrics
    out2 = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "em.py", *TINY, "--out", str(out2)], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 600
    while time.time() < deadline and not list((out2 / "iter1").glob("estep_units/unit*.json")):
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = run_em([*TINY, "--out", str(out2)], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    strip = lambda ms: [{k: v for k, v in m.items() if "seconds" not in k} for m in ms]
    assert strip([json.loads(l) for l in open(out2 / "metrics.jsonl")]) == strip(metrics)
    # the uninterrupted run reports its total time; the resumed one says its clock missed the earlier phases
    assert "total" in (out / "report.md").read_text() and "in this invocation" not in (out / "report.md").read_text()
    assert "in this invocation" in (out2 / "report.md").read_text()

    # a different configuration in the same --out is refused
    r = run_em([*TINY, "--k", "3", "--out", str(out)])
    assert r.returncode != 0 and "another configuration" in r.stderr


@pytest.mark.slow
def test_torchrun_two_ranks_select_the_same_latents(tmp_path):
    """The E-step is sharded by units over ranks with keyed ids and RNG: 2 ranks pick what 1 rank picks."""
    args = [*TINY, "--iters", "1", "--no-baselines"]
    r1 = run_em([*args, "--out", str(tmp_path / "one")], timeout=900)
    assert r1.returncode == 0, r1.stderr[-3000:]
    # same data, base and warm-start model (DDP training is only equal to 1e-5, which can flip a near-tie):
    # what runs under torchrun is the E-step itself (and the M-step after it)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    shutil.rmtree(tmp_path / "two/iter1")
    r2 = run_py(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "em.py", *args, "--out",
                 str(tmp_path / "two")], env={"OMP_NUM_THREADS": "1"}, timeout=900)
    assert r2.returncode == 0, r2.stderr[-3000:]
    one = (tmp_path / "one/iter1/latents.jsonl").read_text()
    assert one == (tmp_path / "two/iter1/latents.jsonl").read_text()
    assert any(c["latent"] for line in one.splitlines() for c in json.loads(line)["chunks"])


@pytest.mark.slow
def test_real_model_path_hf_gpt2_dir_gpt2_tokenizer_authors_format(tmp_path):
    """A tiny random Hugging Face GPT-2 directory (--init) + the gpt2 BPE + an English corpus in the authors'
    chunks format with teacher latents runs one iteration to a report."""
    transformers = pytest.importorskip("transformers")
    import torch
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=256))
    hf.save_pretrained(tmp_path / "gpt2", safe_serialization=True)
    text = ["The cat sat on the mat. ", "It was warm and quiet. ", "Then the dog came in. "]
    with open(tmp_path / "corpus.jsonl", "w") as f:
        for i in range(8):
            f.write(json.dumps({"id": f"c{i}", "chunks": [{"suffix": t, "latent": "why: " + t[:8]} for t in text]}) + "\n")
    with open(tmp_path / "teacher.jsonl", "w") as f:
        for i in range(4):
            f.write(json.dumps({"chunks": [{"suffix": f"{i}: {t}", "latent": "so " + t[:6]} for t in text[::-1]]}) + "\n")
    out = tmp_path / "run"
    r = run_em(["--init", str(tmp_path / "gpt2"), "--tokenizer", "gpt2", "--corpus", str(tmp_path / "corpus.jsonl"),
                "--teacher-latents", str(tmp_path / "teacher.jsonl"), "--iters", "1", "--k", "2", "--out", str(out),
                "--warm-steps", "3", "--m-steps", "3", "--block-size", "96", "--batch-size", "4",
                "--max-latent", "12", "--oracle"], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = [json.loads(l) for l in open(out / "metrics.jsonl")]
    assert {m["name"] for m in metrics} >= {"warm start", "BoLT iter 1", "oracle (the corpus' latents)"}
    check_bounds(out, metrics)
    assert "report" in (out / "report.md").read_text().lower()


# ----------------------------------------------------------------------------- validation before any work

def tiny_ckpt(path, block_size=128):
    save(tiny_gpt(0, block_size=block_size, vocab_size=get_tokenizer("bytes").n_vocab, n_layer=1, n_embd=16),
         str(path), {"tokenizer": "bytes"})
    return str(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Files the bad-input table names by key: a tiny checkpoint (good and broken), a corpus, teacher latents,
    and corpora broken in the ways a new user breaks them."""
    d = tmp_path_factory.mktemp("inputs")
    f = {"CKPT": tiny_ckpt(d / "ckpt"), "FILE": str(d / "a_file")}
    (d / "a_file").write_text("x")
    for name, damage in (("TRUNC", "weights"), ("BADCFG", "config")):
        shutil.copytree(d / "ckpt", d / name)
        p = d / name / ("model.safetensors" if damage == "weights" else "config.json")
        p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2])
        f[name] = str(d / name)
    os.makedirs(d / "EMPTYDIR")
    f["EMPTYDIR"] = str(d / "EMPTYDIR")
    lines = {"GOOD": "".join(json.dumps({"text": f"Doc {i}. It has words in it."}) + "\n" for i in range(6)),
             "TEACH": "".join(json.dumps({"chunks": [{"suffix": f"T{i}. ", "latent": "why"}]}) + "\n" for i in range(3)),
             "NOLATENT": json.dumps({"text": "No latents here."}) + "\n", "ONE": json.dumps({"text": "Only one."}) + "\n",
             "MALFORMED": '{"text": "a"\n', "LIST": "[1, 2]\n", "TEXTINT": '{"text": 123}\n', "NOCHUNKS": '{"chunks": []}\n',
             "SUFFIXINT": '{"chunks": [{"suffix": 5}]}\n', "EMPTY": "", "BLANK": "\n\n"}
    teach = lambda chunk: lines["TEACH"] + json.dumps({"chunks": [chunk]}) + "\n"
    lines.update(TEACHIDS=teach({"suffix": "x. ", "latent": "a", "latent_ids": [300]}),
                 TEACHLONG=teach({"suffix": "x. ", "latent": "a" * 121}),
                 TEACHEMPTY=teach({"suffix": " ", "latent": "a"}),
                 QEMPTY="".join(json.dumps(q) + "\n" for q in ({"question": "Q: 1\n", "answer": 1},
                                                               {"question": "Q", "answer": ""})))
    for name, text in lines.items():
        (d / f"{name}.jsonl").write_text(text)
        f[name] = str(d / f"{name}.jsonl")
    shutil.copytree(d / "ckpt", d / "HEAD0")
    cfg = json.loads((d / "ckpt" / "config.json").read_text())
    (d / "HEAD0" / "config.json").write_text(json.dumps({**cfg, "model": {**cfg["model"], "n_head": 0}}))
    f["HEAD0"] = str(d / "HEAD0")
    for name, raw in (("BINARY", b"\x00\x01\x02\xff\n"), ("BADUTF8", b'{"text": "\xc3("}\n')):
        (d / f"{name}.jsonl").write_bytes(raw)
        f[name] = str(d / f"{name}.jsonl")
    return f


CORPUS = ["--init", "CKPT", "--teacher-latents", "TEACH", "--corpus"]
BAD_INPUTS = [  # (flags after --quick --out OUT, what the one line must say, the corrected flags)
    (["--estep", "raw"], "invalid choice: 'raw'", ["--estep", "sequential"]),
    (["--world-shape", "poem"], "(--world-shape)", ["--world-shape", "prose"]),
    (["--m-epochs", "0"], "got 0.0 (--m-epochs)", ["--m-epochs", "5"]),
    (["--warm-steps", "0"], "got 0 (--warm-steps)", ["--warm-steps", "5"]),
    (["--base-steps", "-1"], "(--base-steps)", []),
    (["--iters", "-1"], "(--iters)", []),
    (["--lr", "nan"], "got nan (--lr)", []),
    (["--lr", "-1"], "(--lr)", []),
    (["--base-lr", "inf"], "(--base-lr)", []),
    (["--batch-size", "0"], "(--batch-size)", []),
    (["--n-embd", "30", "--n-head", "4"], "n_embd 30 is not divisible by n_head 4 (--n-embd)", ["--n-embd", "32"]),
    (["--n-head", "0"], "(--n-head)", []),
    (["--temperature", "-1"], "(--temperature)", []),
    (["--temperature", "nan"], "(--temperature)", []),
    (["--temperature", "0"], "use --k 1 or a temperature > 0 (--temperature)", ["--temperature", "0", "--k", "1"]),
    (["--max-latent", "0"], "(--max-latent)", []),
    (["--max-latent", "200"], "leaves no room in --block-size 128 (--max-latent)", []),
    (["--block-size", "0"], "(--block-size)", []),
    (["--top-p", "1.5"], "(--top-p)", []),
    (["--top-p", "0"], "(--top-p)", []),
    (["--top-k", "-3"], "(--top-k)", []),
    (["--k", "abc"], "invalid int value: 'abc' (--k)", []),
    (["--gen-batch", "0"], "(--gen-batch)", []),
    (["--eval-ks", "1,0"], "(--eval-ks)", []),
    (["--eval-ks", "x"], "(--eval-ks)", []),
    (["--tokenizer", "nosuch"], "(--tokenizer)", []),
    (["--world-target", "20000"], "(--world-target + --world-warm", []),
    (["--world-heldout", "0"], "(--world-heldout)", []),
    (["--nosuch", "1"], "unrecognized arguments", []),
    (["--raw-arms", "tokens,oracle"], "got 'tokens,oracle' (--raw-arms)", ["--raw-arms", "tokens"]),
    (["--raw-arms", "warm+replay,inline,warm+replay"], "repeats an arm", ["--raw-arms", "warm+replay,inline,warm"]),
    (["--raw-arms", "warm+base"], "(each optionally +replay)", ["--raw-arms", ""]),
    (["--raw-arms", "inline,,warm"], "(--raw-arms)", ["--raw-arms", "inline,warm"]),
    ([*CORPUS, "GOOD", "--raw-arms", "pipeline+replay"], "a --corpus run has none (--raw-arms)",
     [*CORPUS, "GOOD", "--raw-arms", "pipeline"]),
    (["--out", "FILE"], "exists and is not a directory (--out)", None),
    (["--out", "FILE/sub"], "cannot be created (--out)", None),
    ([*CORPUS, "MALFORMED"], "MALFORMED.jsonl:1)", [*CORPUS, "GOOD"]),
    ([*CORPUS, "LIST"], "expected a JSON object, got list (", [*CORPUS, "GOOD"]),
    ([*CORPUS, "TEXTINT"], '"text" must be a non-empty string (', [*CORPUS, "GOOD"]),
    ([*CORPUS, "NOCHUNKS"], '"chunks" must be a non-empty list (', [*CORPUS, "GOOD"]),
    ([*CORPUS, "SUFFIXINT"], 'string "suffix" (', [*CORPUS, "GOOD"]),
    ([*CORPUS, "BINARY"], "can't decode byte 0xff", [*CORPUS, "GOOD"]),
    ([*CORPUS, "BADUTF8"], "can't decode byte 0xc3", [*CORPUS, "GOOD"]),
    ([*CORPUS, "EMPTY"], "holds no documents (--corpus)", [*CORPUS, "GOOD"]),
    ([*CORPUS, "BLANK"], "holds no documents (--corpus)", [*CORPUS, "GOOD"]),
    ([*CORPUS, "ONE"], "need 2 (--corpus)", [*CORPUS, "ONE", "--val", "GOOD"]),
    ([*CORPUS, "EMPTYDIR"], "(--corpus)", [*CORPUS, "GOOD"]),
    ([*CORPUS, "GOOD", "--val", "EMPTY"], "holds no documents (--val)", [*CORPUS, "GOOD"]),
    (["--init", "CKPT", "--corpus", "GOOD"], "--corpus needs --teacher-latents", [*CORPUS, "GOOD"]),
    (["--teacher-latents", "TEACH", "--corpus", "GOOD"], "--corpus needs --init", [*CORPUS, "GOOD"]),
    (["--init", "CKPT", "--corpus", "GOOD", "--teacher-latents", "NOLATENT"], "holds no latents: the warm start needs them (--teacher-latents)",
     [*CORPUS, "GOOD"]),
    (["--init", "TRUNC"], "not a readable safetensors file", ["--init", "CKPT"]),
    (["--init", "BADCFG"], "unreadable", ["--init", "CKPT"]),
    (["--init", "EMPTYDIR"], "no checkpoint at", ["--init", "CKPT"]),
    (["--init", "CKPT", "--block-size", "256", "--max-latent", "8"], "exceeds the model's block_size 128 (--init)",
     ["--init", "CKPT", "--max-latent", "8"]),
    (["--dev-questions", "MALFORMED"], "delimiter (--dev-questions)", []),
    (["--dev-questions", "FILE/nosuch.jsonl"], "no such file or directory (--dev-questions)", []),
    (["--init", "HEAD0"], "HEAD0/config.json: field 'n_head' must be an integer >= 1, got 0 (--init)",
     ["--init", "CKPT"]),
    (["--k", "1000000000"], "fit (--k)", ["--k", "4"]),
    (["--k", "٣"], "invalid int value: '٣' (ASCII digits only) (--k)", ["--k", "3"]),
    (["--eval-ks", "1,1"], "repeats a K, got '1,1' (--eval-ks)", ["--eval-ks", "1"]),
    (["--eval-ks", "1,²"], "(ASCII digits), got '1,²' (--eval-ks)", ["--eval-ks", "1,2"]),
    (["--eval-ks", "1000000000"], "fit (--eval-ks)", ["--eval-ks", "8"]),
    (["--gen-batch", "1000000000000"], "fit (--gen-batch)", ["--gen-batch", "64"]),
    (["--batch-size", "1000000000000"], "fit (--batch-size)", ["--batch-size", "8"]),
    (["--seeds", "0,99999999999999999999"], "must be in [0, 2**63), got 99999999999999999999 (--seeds)", None),
    (["--seeds", "0,١"], "(ASCII digits), e.g. 0,1,2 (--seeds)", None),
    (["--questions", "EMPTYDIR"], "is a directory; --questions takes a file (--questions)", []),
    (["--questions", "QEMPTY"], '"answer" is "": no generated text could match it (', []),
    (["--init", "CKPT", "--corpus", "GOOD", "--teacher-latents", "TEACHIDS"],
     "latent_ids outside the bytes vocabulary [0, 261) (", [*CORPUS, "GOOD"]),
    (["--init", "CKPT", "--corpus", "GOOD", "--teacher-latents", "TEACHLONG"],
     "a latent of 121 tokens is longer than 120 (--block-size 128", [*CORPUS, "GOOD"]),
    (["--init", "CKPT", "--corpus", "GOOD", "--teacher-latents", "TEACHEMPTY"],
     'a chunk with a "latent" needs text in its "suffix" (', [*CORPUS, "GOOD"]),
    (["--eval", "--ckpt", "TRUNC", "--val", "GOOD"], "(--ckpt)", None),
    (["--eval", "--ckpt", "CKPT"], "no held-out documents", None),
    (["--eval", "--val", "GOOD"], "--eval needs --ckpt", None),
]


@pytest.mark.parametrize("bad, msg, fixed", BAD_INPUTS, ids=[" ".join(b) for b, _, _ in BAD_INPUTS])
def test_bad_input_refused_at_once_and_out_stays_usable(tmp_path, capsys, inputs, bad, msg, fixed):
    """Each bad input: exit code 2, one line naming the flag or file:line, nothing written to --out; and the
    corrected command passes the same validation into the same --out."""
    out = str(tmp_path / "out")
    argv = lambda flags: ["--quick", "--out", out, *[inputs.get(a, a) for a in flags]]
    bad = [inputs["FILE"] + "/sub" if a == "FILE/sub" else a for a in bad]
    with pytest.raises(SystemExit) as e:
        em.main(argv(bad))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and msg in err, err
    assert not os.path.exists(out)
    if fixed is not None:
        cfg, args = C.parse_args(argv(fixed))
        C.check_inputs(cfg, args.ckpt, args.eval)  # raises if the corrected command would be refused


@pytest.mark.parametrize("flag", ["--teacher-latents", "--corpus"])
def test_read_latent_with_a_layout_mark_is_refused(tmp_path, capsys, inputs, flag):
    """A latent to train on (the warm start's, the oracle's) that holds BOS/EOS, SoL, EoL, PRIOR or POST, as
    text or as latent_ids: exit 2, one line naming the mark and file:line, --out untouched."""
    tok = get_tokenizer("bytes")
    ok = json.dumps({"chunks": [{"suffix": "T. ", "latent": "why"}, {"suffix": "U.", "latent": None}]})
    ids = [ord("a"), tok.sol, ord("b")]
    cases = [({"suffix": "T. ", "latent": "a <|prior|> b"}, 2, '"latent" spells <|prior|>'),
             ({"suffix": "T. ", "latent": tok.decode(ids), "latent_ids": ids}, 3,
              '"latent_ids" hold the id of <|start_of_latent|>'),
             ({"suffix": "T. ", "latent": "x<|end_of_latent|>"}, 2, '"latent" spells <|end_of_latent|>')]
    for i, (bad, line, msg) in enumerate(cases):
        path = tmp_path / f"marks{i}.jsonl"
        path.write_text("".join((json.dumps({"chunks": [{"suffix": "S. ", "latent": "z"}, bad]}) if n == line
                                 else ok) + "\n" for n in range(1, 5)))
        files = {"--teacher-latents": inputs["TEACH"], "--corpus": inputs["GOOD"], flag: str(path)}
        out = str(tmp_path / "out")
        with pytest.raises(SystemExit) as e:
            em.main(["--quick", "--out", out, "--init", inputs["CKPT"], *[a for kv in files.items() for a in kv]])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1, err
        assert f"chunk 1: its {msg}, a layout mark" in err and f"({path}:{line})" in err, err
        assert not os.path.exists(out)


def test_other_configuration_in_out_is_refused_before_writing(tmp_path, capsys):
    out = tmp_path / "out"
    runs.save_config(C.EMConfig(**{**C.QUICK, "quick": True, "out": str(out)}))
    before = (out / "config.json").read_bytes()
    with pytest.raises(SystemExit) as e:
        em.main(["--quick", "--k", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "another configuration (k: 4 -> 2)" in err and err.count("\n") == 1
    assert (out / "config.json").read_bytes() == before and os.listdir(out) == ["config.json"]
    (out / "config.json").write_text("{half a fil")  # not a file em.py writes (they are atomic): refused too
    with pytest.raises(SystemExit) as e:
        em.main(["--quick", "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "config.json is unreadable" in err and err.count("\n") == 1


@pytest.mark.slow
def test_corrected_command_runs_into_the_same_out(tmp_path, inputs):
    """The issue's case: a bad flag, then the corrected command into the same --out runs to its report (a real
    E-step and M-step on a tiny checkpoint, so the latent ids travel through files)."""
    out = str(tmp_path / "run")
    args = ["--init", inputs["CKPT"], "--corpus", inputs["GOOD"], "--teacher-latents", inputs["TEACH"],
            "--iters", "1", "--k", "2", "--warm-steps", "2", "--block-size", "64", "--max-latent", "8",
            "--batch-size", "2", "--gen-batch", "8", "--no-baselines", "--eval-ks", "1,2", "--out", out]
    r = run_em([*args, "--m-epochs", "0"])
    assert r.returncode == 2 and r.stderr.strip().endswith("(--m-epochs)") and not os.path.exists(out)
    r = run_em([*args, "--m-steps", "2"], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    docs = [json.loads(line) for line in open(os.path.join(out, "iter1", "latents.jsonl"))]
    tok = get_tokenizer("bytes")
    assert all(tok.decode(c["latent_ids"]) == c["latent"] for d in docs for c in d["chunks"])


def test_estep_latent_ids_are_what_training_sees(monkeypatch, tmp_path):
    """A sampled latent holding half of a UTF-8 character and a special token: the M-step's training sequence
    holds exactly the tokens the E-step scored (its decoded text would re-encode to other tokens)."""
    from data.corpus import read_docs, write_docs
    from data.layout import encode_doc, sequence
    from data.loader import open_corpus
    tok = get_tokenizer("bytes")
    z = [tok.encode("é")[0], tok.prior, ord("a")]  # 0xC3 alone, <|prior|>, 'a'
    assert tok.encode(tok.decode(z)) != z
    scored = []
    monkeypatch.setattr(em, "generate", lambda model, prompts, n, **kw: [
        {"tokens": z + [tok.eol], "logprobs": [-1.0] * 4, "raw_logprobs": [-1.0] * 4, "stopped": True} for _ in prompts])

    def fake_score(model, prefixes, conts, batch_size=64):
        scored.extend(conts)
        return [{"sum": -3.0, "logprobs": [-1.0] * len(c)} for c in conts]

    monkeypatch.setattr(em, "score", fake_score)
    docs = [{"id": "d0", "chunks": [{"suffix": "Q.", "latent": None}, {"suffix": "A.", "latent": None}]}]
    new, rows = estep_docs(None, tok, C.EMConfig(k=2, max_latent=8, block_size=64), docs, 1,
                           str(tmp_path / "u"))
    write_docs(tmp_path / "latents.jsonl", new)  # what run_estep writes and the M-step reads
    for edoc in (open_corpus(tok, str(tmp_path / "latents.jsonl")).doc(0),
                 encode_doc(tok, read_docs(tmp_path / "latents.jsonl")[0])):
        assert edoc["z"] == [z, z]
        assert sequence(tok, edoc, "prior")[1:] == [tok.sol, tok.prior, *z, tok.eol, *tok.encode("Q."),
                                                    tok.sol, tok.prior, *z, tok.eol, *tok.encode("A."), tok.eos]
    assert all(c[:2 + len(z) + 1] == [tok.sol, tok.prior, *z, tok.eol] for c in scored)  # the scored tokens


def test_sampled_latents_never_hold_a_layout_mark(tmp_path):
    """On a model that writes the marks ~98% of the time: no latent the E-step (paper and sequential), the
    held-out bound's sampler or the evaluation's thought produces holds one; log q is the log-probability under
    the masked distribution sampled from (a direct masked log_softmax at the temperature)."""
    import torch
    from data.layout import latent_marks
    tok = get_tokenizer("bytes")
    model, marks = marks_gpt(tok), latent_marks(tok)
    docs = [{"id": f"d{i}", "chunks": [{"suffix": f"Q: {i} ab\n", "latent": None},
                                       {"suffix": f"A: {i}\n", "latent": None}]} for i in range(3)]
    names = [tok.decode([t]) for t in tok.special_ids]
    for estep in ("paper", "sequential"):
        cfg = C.EMConfig(k=3, max_latent=8, block_size=64, gen_batch=8, estep=estep)
        new, rows = estep_docs(model, tok, cfg, docs, 1, str(tmp_path / estep))
        assert len(rows) == 6 and any(r["capped"] < 3 for r in rows)  # some latents end at EoL
        assert all(not set(r["latent_ids"]) & tok.special_ids for r in rows)
        assert all(n not in z for r in rows for z in r["samples"] for n in names)
    cfg = C.EMConfig(k=3, max_latent=8, block_size=64, gen_batch=8)
    prompts = [em.estep_prompts(tok, [tok.encode("Q: 7 ab\n")], 0, 8, 64)[0]] * 6
    free = em.generate(model, prompts, 8, stop_tokens=(tok.eol,), seed=0, ids=range(6))
    assert all(set(o["tokens"]) & set(marks) for o in free)  # the test has power
    for temperature in (1.0, 0.7):  # the bound's samples, and the E-step's at another --temperature
        zs, log_q, capped = em.posterior_samples(model, tok, cfg, prompts, list(range(6)), temperature)
        for z, lq, cp in zip(zs, log_q, capped):
            assert not set(z) & tok.special_ids
            seq = prompts[0] + z + ([] if cp else [tok.eol])
            with torch.no_grad():
                logits = model(torch.tensor([seq]))[0, len(prompts[0]) - 1:-1].double()  # (n, V)
            logits[:, marks] = float("-inf")
            direct = torch.log_softmax(logits / temperature, -1).gather(1, torch.tensor(seq[len(prompts[0]):])[:, None])
            assert abs(lq - float(direct.sum())) < 1e-3
    qs = [{"question": f"Q: {i} ab\n", "answer": i, "answer_regex": r"(\d)"} for i in range(4)]
    _, qrows = eval_questions(model, tok, cfg, qs, "latent")
    for r in qrows:  # greedy: EoL at once before each chunk (marks banned), then the answer, where no ban holds
        assert r["thoughts"] == ["", ""] and r["generated"].startswith("<|")


def test_changed_corpus_is_prepared_again_or_refused(tmp_path, inputs):
    """out/data/DONE records a sha256 of every input and the data flags: a changed corpus is prepared again
    while no phase has trained on the old data, and refused once one has."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"Old {i}."}) + "\n" for i in range(4)))
    cfg = C.EMConfig(out=str(tmp_path / "out"), corpus=str(corpus), init=inputs["CKPT"],
                     teacher_latents=inputs["TEACH"], max_latent=8, block_size=128)
    tok = get_tokenizer("bytes")
    data = runs.prepare_data(cfg, C.check_inputs(cfg))
    first = lambda t: [tok.decode(t.doc(i)["x"][0]) for i in range(len(t))]  # out/data/target/, the shards
    assert first(data["target"]) == ["Old 0.", "Old 1.", "Old 2."]
    done = json.load(open(tmp_path / "out" / "data" / "DONE"))
    assert done["fingerprint"]["inputs"]["corpus"] == sha256_file(str(corpus))
    corpus.write_text("".join(json.dumps({"text": f"New {i}."}) + "\n" for i in range(6)))
    data = runs.prepare_data(cfg, C.check_inputs(cfg))  # nothing trained yet: prepared again
    assert first(data["target"]) == [f"New {i}." for i in range(5)]
    os.makedirs(tmp_path / "out" / "warm")  # a phase trained on this data
    corpus.write_text(json.dumps({"text": "Newer."}) + "\n" + json.dumps({"text": "Newest."}) + "\n")
    with pytest.raises(ValueError, match=r"--corpus changed since .* warm trained on the old data"):
        C.check_inputs(cfg)
    corpus.write_text("".join(json.dumps({"text": f"New {i}."}) + "\n" for i in range(6)))  # put back: resumes
    assert len(runs.prepare_data(cfg, C.check_inputs(cfg))["target"]) == 5


def test_corpus_is_checked_and_prepared_streaming(tmp_path, inputs):
    """check_inputs keeps only counts of a --corpus (its documents are read again when iterated) and
    write_data streams it into out/data: byte for byte what read_docs and the held-out slicing gave, with
    target_gold.jsonl only when a target document (not a held-out one) has a latent; --val read the same way."""
    from data.corpus import read_docs, write_docs
    tok = get_tokenizer("bytes")
    line = lambda i, z: json.dumps({"id": f"r{i % 4}", "chunks": [{"suffix": f"S{i}. ", "latent": z},
                                                                  {"suffix": f"T{i}.", "latent": None}]})
    for name, latent_from, val in (("gold", 0, ""), ("tail", 19, ""), ("val", 0, inputs["GOOD"])):
        corpus = tmp_path / f"{name}.jsonl"
        corpus.write_text("".join(line(i, "z" if i >= latent_from else None) + "\n" + "\n" * (i % 9 == 0)
                                  + json.dumps({"text": f"Doc {i}. Words here."}) + "\n" for i in range(20)))
        cfg = C.EMConfig(out=str(tmp_path / name), corpus=str(corpus), init=inputs["CKPT"], val=val,
                         teacher_latents=inputs["TEACH"], max_latent=8, block_size=128)
        checked = C.check_inputs(cfg)
        assert not isinstance(checked["docs"]["corpus"], list) and len(checked["docs"]["corpus"]) == 40
        rundir.write_data(cfg, checked, str(tmp_path / name / "data"))
        docs = read_docs(corpus, tok=tok, max_tokens=cfg.block_size // 4)  # what write_data wrote from before
        n = 0 if val else max(1, len(docs) // 20)
        target, heldout = (docs, read_docs(val)) if val else (docs[:-n], docs[-n:])
        ref = tmp_path / f"{name}_ref"
        write_docs(ref / "target.jsonl", [{"id": d["id"], "chunks": [{"suffix": c["suffix"], "latent": None}
                                                                      for c in d["chunks"]]} for d in target])
        write_docs(ref / "heldout.jsonl", heldout)
        if any(c["latent"] is not None for d in target for c in d["chunks"]):
            write_docs(ref / "target_gold.jsonl", target)
        got = sorted(f for f in os.listdir(tmp_path / name / "data") if f.endswith(".jsonl") and f not in ("warm.jsonl", "warm_inline.jsonl"))
        assert got == sorted(os.listdir(ref)) and len(got) == (2 if name == "tail" else 3)
        for f in got:
            assert (tmp_path / name / "data" / f).read_bytes() == (ref / f).read_bytes(), (name, f)
        # the raw arm 'inline' reads the teacher latents as text, each before the chunk it explains
        inline = read_docs(str(tmp_path / name / "data" / "warm_inline.jsonl"))
        assert [c["suffix"] for d in inline for c in d["chunks"]] == [f"why T{i}. " for i in range(3)]
    checked = C.check_inputs(cfg)
    with open(corpus, "a") as f:
        f.write(line(99, None) + "\n")
    with pytest.raises(ValueError, match="changed while out/data was prepared"):
        rundir.write_data(cfg, checked, str(tmp_path / "changed"))


def test_eval_reads_val_as_checked(tmp_path, inputs, capsys):
    """--eval --val: the held-out documents check_inputs checked are read again for evaluation."""
    from data.corpus import read_docs
    from checkpoint import load_model
    argv = ["--eval", "--ckpt", inputs["CKPT"], "--val", inputs["GOOD"], "--eval-ks", "1", "--max-latent", "8",
            "--k", "1", "--block-size", "128", "--out", str(tmp_path / "out")]
    em.main(argv)
    out = capsys.readouterr().out
    m = json.loads(out[out.index("{"):out.rindex("}") + 1])
    cfg, tok = C.parse_args(argv)[0], get_tokenizer("bytes")
    model = load_model(inputs["CKPT"], tok.n_vocab)[0].eval()
    assert m["nll_k1"] == em.eval_nll(model, tok, cfg, read_docs(inputs["GOOD"]), True, [1])["nll_k1"] > 0


def test_the_m_step_config_is_checked_by_train_up_front(monkeypatch):
    """The safety net: a rule em.py forgot is still caught before any phase runs, by train.py's own checks on
    the M-step configuration em.py will pass it."""
    monkeypatch.setattr(rundir, "MINIMUM", {k: v for k, v in rundir.MINIMUM.items() if k != "m_steps"})
    cfg = C.EMConfig(m_steps=-1)
    assert rundir.flag_errors(cfg, phase_errors=C.phase_errors) == [
        "train.py would refuse the M-step: must be positive, got -1 (--max-steps)"]



def test_one_run_per_out_and_a_stale_lock_does_not_block_a_resume(tmp_path, capsys, monkeypatch):
    """A second em.py on a live run's --out is refused at once in one line naming the holder's pid, the LOCK left
    as it was; a LOCK whose process is dead (a killed run) is taken, held while the run works and released after
    (on an error too); under torchrun only rank 0 takes it."""
    import socket
    out = tmp_path / "out"
    out.mkdir()
    held = []
    monkeypatch.setattr(em, "run", lambda cfg, checked: held.append(
        json.loads((out / "LOCK").read_text())["pid"] if (out / "LOCK").exists() else None))
    (out / "LOCK").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))  # live: this test
    with pytest.raises(SystemExit) as e:
        em.main(["--quick", "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and f"in use by process {os.getpid()}" in err and not held
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / "LOCK").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    em.main(["--quick", "--out", str(out)])
    assert held == [os.getpid()] and not (out / "LOCK").exists()

    def fails(cfg, checked):
        raise ValueError("a full disk")
    monkeypatch.setattr(em, "run", fails)
    with pytest.raises(SystemExit):
        em.main(["--quick", "--out", str(out)])
    assert "a full disk" in capsys.readouterr().err and not (out / "LOCK").exists()
    monkeypatch.setattr(em, "run", lambda cfg, checked: held.append((out / "LOCK").exists()))
    monkeypatch.setenv("RANK", "1")
    em.main(["--quick", "--out", str(out)])
    assert held[-1] is False


def test_raw_arms_flag_parses_and_replay_needs_a_base_corpus():
    assert rundir.raw_arms(C.EMConfig()) == [("inline", False)]
    assert rundir.raw_arms(C.EMConfig(raw_arms="warm+replay,pipeline")) == [("warm", True), ("pipeline", False)]
    assert rundir.raw_arms(C.EMConfig(raw_arms="")) == [] and not rundir.raw_arm_errors(C.EMConfig(raw_arms=""))
    assert rundir.raw_arm_errors(C.EMConfig(raw_arms="warm+replay", corpus="c.jsonl")) == [
        "+replay mixes in the built-in world's base corpus; a --corpus run has none (--raw-arms)"]


def test_raw_arms_train_on_what_they_should(monkeypatch, tmp_path):
    """Every --raw-arms arm's train.py configuration and prepared data (train and evaluation faked): inline's
    data is the target then the warm set with the teacher's walks inline; warm starts from the warm checkpoint;
    pipeline trains as many tokens as the warm start and every M-step (counted on train.py's own rows);
    +replay adds as many base documents; the token-matched arm makes the M-step's epochs over the target."""
    arms = "tokens,flops,inline,warm,pipeline,inline+replay,warm+replay"
    cfg = C.EMConfig(**{**C.QUICK, "quick": True, "out": str(tmp_path / "run"), "iters": 2, "raw_arms": arms,
                         "oracle": True})
    checked = C.check_inputs(cfg)
    tok, data = checked["tok"], runs.prepare_data(cfg, checked)
    # the warm arm's raw data never shadows the warm start's teacher walks (the warm phase and pipeline read it)
    assert data["paths"]["warm"] == str(tmp_path / "run/data/warm.jsonl")
    for t in (1, 2):  # the iterations' latents: the gold walks stand in
        shutil.copytree(data["paths"]["target_gold"], tmp_path / f"run/iter{t}/latents")
    seen = {}

    def fake_train(tc):
        seen[os.path.basename(os.path.dirname(tc.out))] = tc
        return {"ckpt": os.path.join(tc.out, "ckpt")}
    monkeypatch.setattr(em, "train", fake_train)
    monkeypatch.setattr(em, "run_eval", lambda cfg, name, ckpt, tok, data, latent: {"acc": 0.1, "acc_se": 0.0})
    rows = em.run_baselines(cfg, tok, data, "BASE", "WARM")
    assert set(seen) == {"raw_tokens", "raw_flops", "raw_inline", "raw_warm", "raw_pipeline_iters2",
                         "raw_inline_replay", "raw_warm_replay", "oracle"}
    assert [r["baseline"] for r in rows] == ["base", "raw_tokens", "raw_flops", "raw_inline", "raw_warm",
                                             "raw_pipeline", "raw_inline_replay", "raw_warm_replay", "oracle"]
    assert rows[-1]["name"] == "oracle (gold walks)"
    raw = {k: tc for k, tc in seen.items() if k != "oracle"}
    assert all(tc.layout == "raw" for tc in raw.values())
    assert {k for k, tc in raw.items() if tc.init == "WARM"} == {"raw_warm", "raw_warm_replay"}
    assert all(tc.init == "BASE" for k, tc in raw.items() if "warm" not in k)
    # the shards each arm reads: (a) target, then the warm set with each teacher walk in a base-text line
    text = lambda docs, i: tok.decode([t for x in docs.doc(i)["x"] for t in x])
    target, warm = data["target"], rundir.read_docs(str(tmp_path / "run/data/warm.jsonl"))
    inline = open_shards(raw["raw_inline"].data)
    assert len(inline) == len(target) + len(warm) and raw["raw_pipeline_iters2"].data == raw["raw_inline"].data
    assert [inline.doc(i) for i in range(len(target))] == [target.doc(i) for i in range(len(target))]
    for i, d in enumerate(warm):
        q, a = d["chunks"]
        assert text(inline, len(target) + i) == q["suffix"] + f"{q['suffix'][3:-1]}: {a['latent']}\n" + a["suffix"]
    base = {"".join(c["suffix"] for c in d["chunks"]) for d in rundir.read_docs(str(tmp_path / "run/data/base.jsonl"))}
    for arm, n in (("raw_inline_replay", len(inline)), ("raw_warm_replay", len(target))):
        mix = open_shards(raw[arm].data)
        assert len(mix) == 2 * n and [mix.doc(i) for i in range(3)] == [inline.doc(i) for i in range(3)]
        assert all(text(mix, i) in base for i in range(n, 2 * n))
    assert raw["raw_warm"].data == raw["raw_flops"].data == data["paths"]["target"]
    # compute: (c) trains the warm start's and both M-steps' tokens, as train.py's rows hold them, within a batch
    from data.loader import Rows, open_corpus

    def trained(tc):
        rows = Rows(tok, open_corpus(tok, tc.data), tc.layout, tc.seed, tc.block_size)
        return int((rows.next_rows(tc.max_steps * cfg.batch_size)[1] >= 0).sum())
    m = C.m_steps(cfg, tok)
    warm_steps = cfg.warm_steps
    pipeline = trained(C.train_config(cfg, "warm", data["paths"]["warm"], "random", "BASE", warm_steps)) + sum(
        trained(C.train_config(cfg, f"iter{t}", str(tmp_path / f"run/iter{t}/latents"), "random", "BASE", m))
        for t in (1, 2))
    assert abs(trained(raw["raw_pipeline_iters2"]) - pipeline) <= cfg.batch_size * cfg.block_size
    assert raw["raw_pipeline_iters2"].max_steps != warm_steps + 2 * m  # raw rows hold more tokens than latent ones
    assert all(raw[k].max_steps == seen["oracle"].max_steps == m for k in ("raw_flops", "raw_inline", "raw_warm"))
    # the token-matched arm: as many epochs over the raw target as an M-step over iteration 1's latents
    epochs = m * cfg.batch_size / C.n_rows(tok, cfg, str(tmp_path / "run/iter1/latents"), "random")
    rows_raw = C.n_rows(tok, cfg, data["paths"]["target"], "raw")
    assert abs(raw["raw_tokens"].max_steps - epochs * rows_raw / cfg.batch_size) <= 0.5
    assert raw["raw_tokens"].max_steps < m and f"({epochs:.1f} epochs)" in rows[1]["name"]
