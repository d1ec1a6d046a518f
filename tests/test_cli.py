"""Every CLI documents every flag: each argparse action of each parser has a help string, and em.py's --help
lists its flags by group and fits on two screens."""
import argparse

import pytest

import bench
import bench_gpu
import em
import sample
import train
from data import prepare, report, world

PARSERS = {"em.py": em.build_parser, "train.py": train.build_parser, "sample.py": sample.build_parser,
           "bench.py": bench.build_parser, "bench_gpu.py": bench_gpu.build_parser, "data.prepare": prepare.build_parser,
           "data.world": world.build_parser, "data.report": report.build_parser}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_flag_has_help(name):
    actions = [a for a in PARSERS[name]()._actions if not isinstance(a, argparse._HelpAction)]
    assert actions, name
    missing = [a.option_strings or [a.dest] for a in actions if not (a.help or "").strip()]
    assert not missing, f"{name}: no help for {missing}"


def test_em_help_is_grouped_and_short(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    parser = em.build_parser()
    text = parser.format_help()
    assert len(text.splitlines()) <= 100, len(text.splitlines())
    titles = [g.title for g in parser._action_groups]
    for group in (em.RUN, em.INPUTS, em.MODEL, em.BUDGETS, em.ESTEP, em.EVAL, em.WORLD):
        assert group in titles, group
    grouped = {a.dest for g in parser._action_groups if g.title in (em.RUN, em.ESTEP, em.EVAL)
               for a in g._group_actions}
    assert {"iters", "k", "estep", "eval", "ckpt"} <= grouped


def test_add_flags_groups_and_skips_empty_defaults():
    from dataclasses import dataclass
    from data.corpus import add_flags, opt

    @dataclass
    class C:
        n: int = opt(3, "how many", group="g")
        name: str = opt("", "a name")
        on: bool = opt(False, "a switch", group="g")

    groups = {}
    ap = add_flags(argparse.ArgumentParser(), C, groups=groups)
    assert [a.dest for a in groups["g"]._group_actions] == ["n", "on"]
    helps = {a.dest: a.help for a in ap._actions}
    assert helps == {"help": helps["help"], "n": "how many (default: 3)", "name": "a name", "on": "a switch"}
    assert vars(ap.parse_args(["--n", "5", "--on"])) == {"n": 5, "name": "", "on": True}
