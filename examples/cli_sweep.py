#!/usr/bin/env python3
"""Runs one example program with every bad flag set of cli_sweep.txt.

    cli_sweep.py <program> <table>

Every run must exit with status 1 (not a signal, not CLI11's own codes),
name the flag on stderr without a C++ backtrace, and leave its --out folder
empty. Bad flags are checked before any work, so each run takes well under
a second; a run that takes longer than the timeout fails. Prints the counts
(inputs tried, clean errors) and exits 1 when any run failed.
"""

import os
import shlex
import stat
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

INT_VALUES = ["-1", "nan", "1e400"]
REAL_VALUES = ["-1", "nan", "inf", "1e400", "abc"]
BACKTRACE = ("Exception raised from", "frame #")
TIMEOUT_S = 30


def read_table(path, program):
    """The rows of the table that apply to `program`: (kind, flag, extra)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = shlex.split(line, comments=True)
            if not words:
                continue
            if len(words) < 3:
                sys.exit(f"{path}: a row needs <example> <kind> <flag>: {line!r}")
            example, kind, flag, extra = words[0], words[1], words[2], words[3:]
            if example in ("*", program):
                rows.append((kind, flag, extra))
    return rows


def cases(rows, paths):
    """Every run: (what, args, flag, with_out), where `with_out` says
    whether the run gets its own --out folder and a missing data folder;
    None: a data folder that passes the check, so that the run reaches
    --out (or a file read after the check), and --out unless the case sets
    it."""
    out = []

    def sub(v):
        return paths.get(v[1:-1], v) if v.startswith("{") else v

    for kind, flag, extra in rows:
        if kind in ("int", "real", "word"):
            values = {"int": INT_VALUES, "real": REAL_VALUES, "word": []}[kind]
            for v in values + [sub(e) for e in extra]:
                out.append((f"{flag} {v!r}", [flag, v], flag, True))
        elif kind == "path":
            if flag == "--data-dir":
                targets = ["missing", "fifo", "file", "empty_dir"]
            else:
                targets = ["missing", "fifo", "empty_dir"]
            for t in targets:
                out.append((f"{flag} <{t}>", [flag, paths[t]], flag, True))
        elif kind == "out":
            blocked = os.path.join(paths["file"], "out")
            out.append((f"{flag} <a file>", [flag, paths["file"]], flag, None))
            out.append((f"{flag} <under a file>", [flag, blocked], flag, None))
            out.append((f"{flag} <no value>", [flag], flag, None))
        elif kind == "loaded":
            for v in extra:
                out.append((f"{flag} {sub(v)!r}", [flag, sub(v)], flag, None))
        elif kind == "args":
            out.append((" ".join(extra), [sub(e) for e in extra], flag, True))
        elif kind == "unknown":
            out.append((flag, [flag], flag, True))
        else:
            sys.exit(f"unknown kind {kind!r} for {flag}")
    return out


def run_one(program, case, root, data_dir, index):
    what, args, flag, with_out = case
    work = os.path.join(root, f"run{index}")
    os.mkdir(work)
    out_dir = os.path.join(work, "out")
    # The data folder is a missing one unless the case sets it (or --out):
    # a bad flag that were accepted would then fail on --data-dir instead
    # of training, and the message would not name the flag.
    cmd = [program, "--scale", "quick"]
    if with_out is None:
        cmd += ["--data-dir", data_dir]
        if flag != "--out":
            cmd += ["--out", out_dir]
    elif not any(a == "--data-dir" for a in args):
        cmd += ["--data-dir", os.path.join(work, "no-data")]
    if with_out:
        cmd += ["--out", out_dir]
    cmd += args
    try:
        p = subprocess.run(
            cmd, cwd=work, capture_output=True, text=True, timeout=TIMEOUT_S,
            env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE",
                     OPENBLAS_NUM_THREADS="1"))
    except subprocess.TimeoutExpired:
        return f"{what}: still running after {TIMEOUT_S} s"
    problems = []
    if p.returncode < 0:
        problems.append(f"killed by signal {-p.returncode}")
    elif p.returncode != 1:
        problems.append(f"exit status {p.returncode}, expected 1")
    if flag not in p.stderr:
        problems.append(f"stderr does not name {flag}")
    if any(b in p.stderr + p.stdout for b in BACKTRACE):
        problems.append("a C++ backtrace")
    # Nothing may be written: not in --out, nor anywhere in the run's folder
    # (the default --out is results/<program> under the working folder).
    left = []
    for dirpath, _, files in os.walk(work):
        left += [os.path.join(dirpath, f) for f in files]
    if left:
        problems.append(f"files left: {left}")
    if problems:
        return (f"{what}: " + "; ".join(problems) +
                f"\n    stderr: {p.stderr.strip()[:400]}")
    return None


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    program, table = os.path.abspath(sys.argv[1]), sys.argv[2]
    name = os.path.basename(program)
    rows = read_table(table, name)
    with tempfile.TemporaryDirectory(prefix=f"cli-sweep-{name}-") as root:
        fixtures = os.path.join(root, "fixtures")
        os.mkdir(fixtures)
        paths = {
            "missing": os.path.join(fixtures, "no-such-path"),
            "fifo": os.path.join(fixtures, "fifo"),
            "file": os.path.join(fixtures, "file"),
            "empty_dir": os.path.join(fixtures, "empty-dir"),
        }
        os.mkfifo(paths["fifo"])
        with open(paths["file"], "w", encoding="utf-8") as f:
            f.write("not what the flag wants\n")
        os.mkdir(paths["empty_dir"])
        # The four files the data-folder check looks for, empty: enough to
        # pass the check before --out's (nothing reads them then).
        data_dir = os.path.join(fixtures, "data")
        os.mkdir(data_dir)
        for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            open(os.path.join(data_dir, stem), "w", encoding="utf-8").close()
        runs = cases(rows, paths)
        jobs = os.cpu_count() or 1
        with ThreadPoolExecutor(jobs) as pool:
            results = list(pool.map(
                lambda ic: run_one(program, ic[1], root, data_dir, ic[0]),
                enumerate(runs)))
        # The fixtures are as they were: nothing wrote into them.
        untouched = (stat.S_ISFIFO(os.stat(paths["fifo"]).st_mode) and
                     not os.listdir(paths["empty_dir"]) and
                     sorted(os.listdir(fixtures)) ==
                     ["data", "empty-dir", "fifo", "file"] and
                     len(os.listdir(data_dir)) == 4)
    failures = [r for r in results if r is not None]
    if not untouched:
        failures.append("a run wrote into the fixture folder")
    print(f"cli sweep {name}: {len(runs)} inputs tried, "
          f"{len(runs) - len(failures)} clean errors")
    for f in failures:
        print(f"FAIL {f}")
    if len(runs) < 20:
        print(f"only {len(runs)} inputs for {name}: is the table read?")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
