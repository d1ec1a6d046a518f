"""The command line, the same for every CLI: flags declared as dataclass fields (opt: help, choices, --help group,
metavar) and built into argparse flags (add_flags), ASCII-only numbers, argparse's errors as one line naming the
flag (parser_error: main() prints `error: ...` and exits 2, as fail does), and the --out check every CLI makes."""
import argparse
import dataclasses
import os
import re
import sys


def out_dir_error(path, flag="--out"):
    """Why `path` cannot be an output directory (None when it can): it must be a writable directory or one that
    makedirs can create. Nothing is created here: validation runs before any work."""
    if not path:
        return f"an output directory is required ({flag})"
    p = os.path.abspath(path)
    if os.path.exists(p) and not os.path.isdir(p):
        return f"{path} exists and is not a directory ({flag})"
    while not os.path.exists(p):
        p = os.path.dirname(p)
    if not os.path.isdir(p):
        return f"{p} is not a directory, so {path} cannot be created ({flag})"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{p} is not writable ({flag})"
    return None


def parser_error(message):
    """argparse's error hook for every CLI: 'argument --k: invalid int value' -> ValueError('invalid int value
    (--k)'), which main() prints as one line and exit code 2 (argparse would print its usage block first)."""
    m = re.match(r"argument (\S+?)(?:/\S+)?: (.*)", message, re.S)
    raise ValueError(f"{m[2]} ({m[1]})" if m else message)


def fail(msg):
    """A CLI's way out on bad input: one line `error: msg` on stderr, exit code 2, no traceback."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def ascii_int(s):
    """argparse's int for every CLI: ASCII digits only (int() would also read '١٢', '²'-free Unicode digits and
    '1_000', so a flag could mean a number its user never typed)."""
    t = s.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", t):
        raise argparse.ArgumentTypeError(f"invalid int value: {s!r}" + ("" if s.isascii() else " (ASCII digits only)"))
    return int(t)


def ascii_float(s):
    """argparse's float for every CLI: what float() reads, in ASCII and without digit separators."""
    try:
        if not s.isascii() or "_" in s:
            raise ValueError
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {s!r}" + ("" if s.isascii() else " (ASCII digits "
                                                                          "only)")) from None


def opt(default, help, choices=None, group=None, metavar=None):
    """A dataclass field that add_flags turns into a flag: its help, choices, --help group and metavar."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "group": group,
                                                        "metavar": metavar})


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help with the description as written and every flag's help from column 30, most on one line."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=30)


METAVARS = {int: "N", float: "X"}  # short placeholders keep each flag's --help on one line


def add_flags(ap, config, given_only=False, types=None, groups=None):
    """One argparse flag per field of the dataclass `config` (em.py, train.py and data/world.py build their CLIs
    with it): --name-with-dashes, typed by the field (or types[name]), help from the field's metadata "help"
    plus its default (unless off or empty), choices and metavar from the metadata, listed under the metadata's
    "group" in --help (groups: title -> argparse group, created here when missing, so the caller can add its own
    flags to one); a bool is a store_true switch. given_only: every flag defaults to None, so the caller sees
    which flags were typed."""
    groups = {} if groups is None else groups
    for f in dataclasses.fields(config):
        flag, meta = "--" + f.name.replace("_", "-"), f.metadata or {}
        unset = f.default is False or f.default is None or f.default == ""
        shown = "" if unset else f" (default: {f.default!r})"
        h = (meta.get("help", "") + shown).strip().replace("%", "%%")
        title = meta.get("group")
        if title is not None and title not in groups:
            groups[title] = ap.add_argument_group(title)
        where = groups.get(title, ap)
        if f.type is bool or f.type == "bool":
            where.add_argument(flag, action="store_true", help=h)
        else:
            kind = (types or {}).get(f.name) or (f.type if isinstance(f.type, type) else type(f.default))
            metavar = meta.get("metavar") or (None if meta.get("choices") else METAVARS.get(kind))
            kind = {int: ascii_int, float: ascii_float}.get(kind, kind)
            where.add_argument(flag, type=kind, default=None if given_only else f.default,
                               choices=meta.get("choices"), metavar=metavar, help=h)
    return ap
