#!/usr/bin/env python3
"""Writes <out>/REPORT.md from the example programs' own records.

    scripts/assemble-report.py --out DIR --scale SCALE [--date YYYY-MM-DD]
                               PROGRAM:STATUS:SECONDS ...

Each PROGRAM ran with --out DIR/PROGRAM (scripts/run-all.sh runs them and
then calls this). STATUS is what its exit said ("ok" or "FAILED"); SECONDS
its wall-clock time (or "-" when not measured). Everything else comes from
what each program recorded: the `run` object of its JSON summary
(summary.json, or results.json for the programs that name it so) gives the
commit, the LibTorch version, the threads, the device and the scale; its
`divergence` objects (`diverged: true`) mark it as having diverged
training; its summary.md
is the section. The header names the commit, dlcore's and LibTorch's
versions, the device, the scale and the machine; a value the programs
disagree on is listed with each program's value. Without any record (every
program failed), the commit comes from `git describe --always --dirty`, or
"unknown" outside a git checkout or without git. The file is written
atomically (a temporary file renamed over it).
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile


def load_record(folder):
    """The program's JSON summary as a dict, or None."""
    for name in ("summary.json", "results.json"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    return json.load(f)
            except (OSError, ValueError):
                return None
    return None


def count_diverged(node):
    """How many `divergence` (or `*_divergence`) objects in the record say
    `diverged: true` (a run can be recorded in more than one place)."""
    n = 0
    if isinstance(node, dict):
        d = node.get("divergence")
        if isinstance(d, dict) and d.get("diverged") is True:
            n += 1
        for key, value in node.items():
            if key == "divergence":
                continue
            if key.endswith("_divergence") and isinstance(value, dict):
                n += 1 if value.get("diverged") is True else 0
                continue
            if key.endswith("_divergence") and isinstance(value, list):
                n += sum(
                    1
                    for v in value
                    if isinstance(v, dict) and v.get("diverged") is True
                )
                continue
            n += count_diverged(value)
    elif isinstance(node, list):
        for value in node:
            n += count_diverged(value)
    return n


def git_commit(root):
    try:
        r = subprocess.run(
            ["git", "-C", root, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "unknown"
    out = r.stdout.strip()
    return out if r.returncode == 0 and out else "unknown"


def fact(runs, key, fallback):
    """One value when every program agrees, else each program's value."""
    values = {p: r[key] for p, r in runs.items() if key in r}
    if not values:
        return fallback
    distinct = sorted({str(v) for v in values.values()})
    if len(distinct) == 1:
        return distinct[0]
    return "mixed: " + ", ".join(f"{p} {v}" for p, v in values.items())


def section(program, folder):
    path = os.path.join(folder, "summary.md")
    if not os.path.isfile(path):
        return (
            f"## {program}\n\nNo summary was written (the program failed; "
            "see its output above).\n"
        )
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # Links inside a summary are relative to its own folder.
    return re.sub(r"\]\(([^):#]+)\)", rf"]({program}/\1)", text)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--scale", required=True)
    ap.add_argument("--date", default=None)
    ap.add_argument("programs", nargs="+", metavar="PROGRAM:STATUS:SECONDS")
    args = ap.parse_args(argv)

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = []
    runs = {}
    for item in args.programs:
        parts = item.split(":")
        if len(parts) != 3:
            ap.error(f"expected PROGRAM:STATUS:SECONDS, got {item!r}")
        program, status, seconds = parts
        folder = os.path.join(args.out, program)
        record = load_record(folder)
        run = record.get("run") if isinstance(record, dict) else None
        if isinstance(run, dict):
            runs[program] = run
        diverged = count_diverged(record) if record is not None else 0
        rows.append((program, status, seconds, run or {}, diverged))

    commit = fact(runs, "commit", git_commit(root))
    date = args.date or datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%d"
    )
    lines = [
        "# dlcore — homework reproductions",
        "",
        f"Scale `{fact(runs, 'scale', args.scale)}`, commit `{commit}`, "
        f"dlcore {fact(runs, 'dlcore_version', 'unknown')}, "
        f"LibTorch {fact(runs, 'libtorch_version', 'unknown')}, "
        f"device `{fact(runs, 'device', 'unknown')}`. Generated by "
        f"`scripts/run-all.sh` on {date} ({os.cpu_count()} cores, "
        f"{platform.machine()}); the threads column is LibTorch's intra-op "
        "threads of each program.",
        "",
        "Accuracies are percentages here (89.12 %); the CSV and JSON files "
        "keep fractions in [0, 1]. A training run whose loss or parameters "
        "stopped being finite is reported as diverged (at its epoch and "
        "step), never with an accuracy. Each section links its own CSV/JSON "
        "files.",
        "",
        "| program | status | threads | device | seconds |",
        "|---|---|---|---|---|",
    ]
    for program, status, seconds, run, diverged in rows:
        note = ""
        if status == "ok" and diverged:
            note = ", training diverged (see its section)"
        threads = run.get("threads", "—")
        device = run.get("device", "—")
        lines.append(
            f"| [{program}](#{program}) | {status}{note} | {threads} | "
            f"{device} | {seconds} |"
        )
    body = "\n".join(lines) + "\n"
    for program, *_ in rows:
        body += f'\n<a id="{program}"></a>\n\n'
        body += section(program, os.path.join(args.out, program))

    report = os.path.join(args.out, "REPORT.md")
    fd, tmp = tempfile.mkstemp(prefix=".REPORT.md.", dir=args.out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
        os.replace(tmp, report)
    except BaseException:
        os.unlink(tmp)
        raise
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
