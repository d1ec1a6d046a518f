"""bench_gpu.py on a CPU machine: the one-line refusals, the check runner (fake checks in place of the GPU ones:
statuses, lines, the time budget, worker processes), the JSON -> README table, which checks exist, and what the
module imports (a preinstalled CUDA image has torch and triton, maybe not transformers)."""
import ast
import json
import os
import sys

import pytest
import torch

import bench_gpu as G

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")


def run_py(args, env=None, unset=()):
    from conftest import run_py as run  # imported here: worker processes import this module too
    return run(args, env=env, unset=unset, timeout=300)


# module-level fake checks: worker processes import them by name
def fake_pass(x):
    return dict(ok=True, detail=f"got {x} in pid {os.getpid()}")


def fake_fail():
    return dict(ok=False, detail="off by one")


def fake_error():
    raise ValueError("boom\nsecond line of the message")


def fake_skip():
    raise G.Skip("needs sm80 or newer")


def fake_speed():
    return G.speed("ours", 3.0, "theirs", 6.0, "ms", "a | b")


def never():
    raise AssertionError("a check past the time budget ran")


@no_gpu
def test_refuses_without_cuda(tmp_path):
    out = tmp_path / "gpu.json"
    r = run_py(["bench.py", "gpu", "--json", str(out)], unset=("TRITON_INTERPRET",))  # bench.py delegates
    assert r.returncode == 2 and r.stdout == "" and not out.exists()
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("error: no CUDA GPU here")


def test_refuses_interpreter_and_imports_neither_triton_nor_transformers(tmp_path):
    """Importing bench_gpu loads neither (triton only inside checks, transformers only in the HF one); under
    TRITON_INTERPRET it refuses in one line before anything runs."""
    code = ("import sys, bench_gpu; print(sorted(m for m in ('transformers', 'triton') if m in sys.modules)); "
            f"sys.exit(bench_gpu.main(['--json', {str(tmp_path / 'x.json')!r}]))")
    r = run_py(["-c", code], env={"TRITON_INTERPRET": "1"})
    assert r.stdout == "[]\n", r.stderr
    assert r.returncode == 2 and r.stderr == "error: TRITON_INTERPRET is set: the GPU check runs the compiled " \
                                             "kernels (unset it)\n"


def test_flag_errors(capsys):
    for argv, msg in ((["--only", "nothing"], "no check name contains any of ['nothing'] (--only)"),
                      (["--readme", "README.md"], "--readme needs --table JSON (--readme)"),
                      (["--jobs", "-1"], "must be >= 0, got -1 (--jobs)")):
        with pytest.raises(SystemExit) as e:
            G.main(argv)
        assert e.value.code == 2 and capsys.readouterr().err == f"error: {msg}\n"


def test_runner_statuses_and_lines():
    checks = [("a pass", fake_pass, (7,), False), ("a fail", fake_fail, (), False), ("an error", fake_error, (), False),
              ("a skip", fake_skip, (), False), ("a speed", fake_speed, (), False)]
    lines = []
    res = G.run_checks(checks, budget=600, jobs=1, emit=lines.append)
    assert [r["name"] for r in res] == [c[0] for c in checks]
    assert [r["status"] for r in res] == ["pass", "fail", "error", "skip", "pass"]
    assert res[0]["detail"] == f"got 7 in pid {os.getpid()}"  # jobs=1: everything in this process
    assert res[2]["detail"] == "ValueError: boom"  # the first line only
    assert res[4]["ratio"] == 2.0 and res[4]["unit"] == "ms"  # ms: lower is better, so 6 / 3
    assert len(lines) == 5 and lines[1].startswith("FAIL  a fail") and lines[4].endswith("2.00x  [0 s]")
    assert G.tally(res) == "5 checks: 2 passed, 1 failed, 1 errors, 1 skipped"


def test_runner_budget_skips_what_is_left():
    res = G.run_checks([("late", never, (), False), ("late too", never, (), True)], budget=0, jobs=2,
                       emit=lambda s: None)
    assert [r["status"] for r in res] == ["skip", "skip"] and "time budget" in res[0]["detail"]


def test_runner_parallel_checks_run_in_workers():
    """parallel=True checks go to spawned workers (another pid), results and lines still in list order."""
    lines = []
    checks = [("w1", fake_pass, (1,), True), ("here", fake_pass, (2,), False), ("w2", fake_pass, (3,), True)]
    res = G.run_checks(checks, budget=600, jobs=2, emit=lines.append)
    assert [r["name"] for r in res] == ["w1", "here", "w2"] and all(r["status"] == "pass" for r in res)
    pid = lambda r: int(r["detail"].split()[-1])
    assert pid(res[0]) != os.getpid() and pid(res[2]) != os.getpid() and pid(res[1]) == os.getpid()
    assert [ln.split()[1] for ln in lines] == ["w1", "w2", "here"]  # the workers' results come first


def test_json_to_table_and_readme(tmp_path, capsys):
    res = G.run_checks([("a pass", fake_pass, (1,), False), ("a speed", fake_speed, (), False)], 600,
                       emit=lambda s: None)
    machine = dict(gpu="NVIDIA H100", capability="sm90", cuda="12.4", torch="2.11.0", triton="3.6.0",
                   date="2027-01-01 00:00 UTC")
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({"machine": machine, "command": "python bench_gpu.py --json gpu.json", "checks": res}))
    assert G.main(["--table", str(path)]) == 0
    table = capsys.readouterr().out
    assert table.startswith("Measured 2027-01-01 00:00 UTC on NVIDIA H100 (sm90, CUDA 12.4), torch 2.11.0, triton "
                            "3.6.0, by `python bench_gpu.py --json gpu.json`: 2 checks: 2 passed")
    rows = table.splitlines()[2:]
    assert rows[0] == "| check | result | ours | baseline | ratio | detail |" and len(rows) == 4
    assert rows[3] == "| a speed | pass | ours: 3 ms | theirs: 6 ms | **2.00x** | a / b |"  # '|' kept out of cells
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{G.TABLE[0]}\nnot yet measured\n{G.TABLE[1]}\nafter\n")
    assert G.main(["--table", str(path), "--readme", str(readme)]) == 0
    assert readme.read_text() == f"intro\n{G.TABLE[0]}\n{table}{G.TABLE[1]}\nafter\n"
    path.write_text("{}")
    with pytest.raises(SystemExit) as e:
        G.main(["--table", str(path)])
    assert e.value.code == 2 and capsys.readouterr().err.startswith("error: KeyError: 'machine' (--table ")


def test_checks_cover_every_kernel_the_engine_and_train():
    checks = G.all_checks()
    names = [c[0] for c in checks]
    assert len(set(names)) == len(names)
    flash = {n for n in names if n.startswith("flash ")}
    assert flash == {f"flash {dt} D{D} {c}" for dt in ("fp32", "fp16", "bf16") for D in (64, 128)
                     for c in ("causal", "full")}
    for want in ("decode fp32 ragged", "decode bf16 ragged", "sampler = torch reference", "sampler distribution",
                 "engine greedy = torch path", "speed engine vs HF generate", "speed train.py",
                 "speed train.py --compile"):
        assert want in names
    assert {n.split()[1] for n in names if n.startswith("speed")} == {"flash", "decode", "sampler", "engine", "train.py"}
    for name, fn, args, parallel in checks:
        assert parallel == (not name.startswith("speed")), name  # nothing else runs while speed is timed
        assert getattr(G, fn.__name__) is fn  # module-level: a worker process can import it


def test_imports_only_what_a_cuda_image_has():
    """Only the stdlib, torch, triton, numpy, safetensors, tiktoken and the project's modules; transformers only
    inside the Hugging Face comparison."""
    project = {f[:-3] for f in os.listdir(ROOT) if f.endswith(".py")} | {"data", "kernels"}
    allowed = set(sys.stdlib_module_names) | {"torch", "triton", "numpy", "safetensors", "tiktoken"} | project
    tree = ast.parse(open(os.path.join(ROOT, "bench_gpu.py")).read())
    for fn in [tree] + [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        for node in ast.walk(fn) if fn is not tree else tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                for m in mods:
                    root = m.split(".")[0]
                    ok = root in allowed or (root == "transformers" and getattr(fn, "name", "") == "speed_engine")
                    assert ok, (getattr(fn, "name", "<module>"), m)
