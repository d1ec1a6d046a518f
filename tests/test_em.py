"""em.py: importance weights on a hand-built case, keyed resampling, and the loop end to end (quick preset),
including resume after a kill, torchrun with 2 ranks, and the real-model path (HF GPT-2 dir + gpt2 BPE)."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import em
from data.tokenizer import get_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--quick", "--iters", "2", "--k", "2", "--world-target", "24", "--world-warm", "16", "--world-heldout", "4",
        "--world-questions", "16", "--base-steps", "30", "--warm-steps", "10", "--m-steps", "10"]


def run_em(args, env=None, **kw):
    return subprocess.run([sys.executable, "em.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, **kw)


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
    cfg = em.EMConfig(k=K, max_latent=8, block_size=64)
    docs = [{"id": f"d{i}", "chunks": [{"suffix": "abc", "latent": None}, {"suffix": "de", "latent": None}]}
            for i in range(5)]
    new, rows = em.estep(None, tok, cfg, docs, 1, str(tmp_path / "units"))
    assert len(rows) == 10
    for r in rows:
        assert r["log_w"] == pytest.approx([p - q for p, q in zip(fake_p, fake_q)])
        assert r["pick"] == 1
    assert all(c["latent"] == tok.decode([tok.encode("z")[0] + 1]) for d in new for c in d["chunks"])
    # ties: picks spread over all samples, and are a pure function of the key
    picks = [em.choose([0.0, 0.0, 0.0], (0, 1, "doc", c)) for c in range(300)]
    assert {picks.count(j) for j in range(3)} and min(picks.count(j) for j in range(3)) > 60
    assert picks == [em.choose([0.0, 0.0, 0.0], (0, 1, "doc", c)) for c in range(300)]
    assert em.ess([0.0, 0.0, 0.0]) == pytest.approx(3.0) and em.ess([0.0, -100.0]) == pytest.approx(1.0)


def test_logsumexp_matches_math():
    xs = [-1000.0, -1001.0, -999.5]
    assert em.logsumexp(xs) == pytest.approx(math.log(sum(math.exp(x + 1000) for x in xs)) - 1000)


def test_bad_flags_are_one_line_errors(tmp_path):
    r = run_em(["--k", "0", "--out", str(tmp_path)])
    assert r.returncode == 2 and "--k must be >= 1" in r.stderr and "Traceback" not in r.stderr
    r = run_em(["--corpus", str(tmp_path / "missing.jsonl")])
    assert r.returncode == 2 and "missing.jsonl" in r.stderr


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
    assert all(0 <= m["acc"] <= 1 and m["n_questions"] == 16 for m in metrics)
    latent = [m for m in metrics if "nll_k1" in m]
    assert all(m["nll_k1"] >= m["nll_k2"] - 0.5 for m in latent)  # bounds are finite numbers of nats/token
    # every target chunk got a latent drawn from the model; no gold latent can reach the E-step input
    target = [json.loads(l) for l in open(out / "data/target.jsonl")]
    assert all(c["latent"] is None for d in target for c in d["chunks"])
    assert "<svg" in (out / "plot.svg").read_text()
    # gold diagnostics count the answer chunks only (the question chunk's empty latent is no match), and the
    # E-step can only pick the gold latent when one of its K samples is it
    diag = json.loads((out / "iter1/estep.json").read_text())
    assert diag["gold_chunks"] == len(target) and diag["gold_match"] <= diag["gold_exists"]

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
    r2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                         "em.py", *args, "--out", str(tmp_path / "two")], cwd=ROOT, capture_output=True, text=True,
                        env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)
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
                "--max-latent", "12"], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = [json.loads(l) for l in open(out / "metrics.jsonl")]
    assert {m["name"] for m in metrics} >= {"warm start", "BoLT iter 1", "oracle (teacher latents)"}
    assert all(math.isfinite(m.get("nll_k1", m.get("nll", float("nan")))) for m in metrics)
    assert "report" in (out / "report.md").read_text().lower()
