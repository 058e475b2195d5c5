#!/usr/bin/env python3
"""Checks that the library's headers respect its rooms (docs/architecture.md).

    scripts/check-layers.py [include-dir [architecture-page]]

Rooms, lowest first: detail (and the root headers per_group.h, version.h),
io, data, nn, optim, train, study, distributed; dlcore.h includes everything.
A header may include a header of its own room or of a lower one, never of a
higher one. A room's private helpers (`<room>/detail/...`) may be included
only from that room. A forwarding header, kept at a header's old path for
one release, may include the header that moved, wherever it went, and must
hold nothing else. With an architecture page (docs/architecture.md), also
checks that the page names every header (by file name) and names no header
that does not exist. Exits 1 and names every offence.
"""

import os
import re
import sys

RANK = {
    "detail": 0,
    "io": 1,
    "data": 2,
    "nn": 3,
    "optim": 4,
    "train": 5,
    "study": 6,
    "distributed": 7,
}
ROOT_HEADERS = {"per_group.h": 0, "version.h": 0, "dlcore.h": 99}
# Old path -> where its content moved (kept for one release).
FORWARDING = {
    "optim/lr_finder.h": {"study/lr_finder.h"},
    "train/batch_size_study.h": {"study/batch_size_study.h"},
    "train/report.h": {"io/csv.h", "io/files.h", "io/json.h",
                       "io/number_format.h"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]dlcore/([^>"]+)[>"]', re.M)


def room_of(rel):
    """(room name, rank) of a header path relative to include/dlcore."""
    parts = rel.split("/")
    if len(parts) == 1:
        if rel not in ROOT_HEADERS:
            raise SystemExit(f"check-layers: {rel}: a header at the top "
                             "level that has no room; add it to a room")
        return rel, ROOT_HEADERS[rel]
    if parts[0] not in RANK:
        raise SystemExit(f"check-layers: {rel}: folder '{parts[0]}' is not "
                         f"a room ({', '.join(RANK)})")
    return parts[0], RANK[parts[0]]


def private_room(rel):
    """The room whose private helper this is (`<room>/detail/...`), or None."""
    parts = rel.split("/")
    if len(parts) >= 3 and parts[1] == "detail":
        return parts[0]
    return None


def check_page(base, page):
    """The page names every header's file name, and no other `*.h`."""
    with open(page, encoding="utf-8") as f:
        text = f.read()
    # File names of headers, except those under examples/ or tests/.
    named = set(re.findall(r"(?<![A-Za-z0-9_/])(?:[A-Za-z0-9_]+/)*?"
                           r"([A-Za-z0-9_]+\.h)\b", text))
    named -= set(re.findall(r"(?:examples|tests)/([A-Za-z0-9_]+\.h)", text))
    names = set()
    for dirpath, _, files in os.walk(base):
        names.update(n for n in files if n.endswith(".h"))
    errors = [f"{page}: does not name the header {n}"
              for n in sorted(names - named)]
    errors += [f"{page}: names {n}, which no header is called"
               for n in sorted(named - names)]
    return errors


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    base = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "include")
    base = os.path.join(base, "dlcore")
    errors = []
    headers = 0
    for dirpath, _, names in os.walk(base):
        for name in sorted(names):
            if not name.endswith(".h"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, base).replace(os.sep, "/")
            headers += 1
            room, rank = room_of(rel)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if rel in FORWARDING:
                targets = set(INCLUDE.findall(text))
                code = [line for line in text.splitlines()
                        if line.strip() and not line.lstrip().startswith(
                            ("//", "#pragma", "#include"))]
                if targets != FORWARDING[rel] or code:
                    errors.append(f"{rel}: a forwarding header must include "
                                  f"exactly {sorted(FORWARDING[rel])} and "
                                  "hold nothing else")
                continue
            for target in INCLUDE.findall(text):
                if not os.path.isfile(os.path.join(base, target)):
                    errors.append(f"{rel}: includes dlcore/{target}, which "
                                  "does not exist")
                    continue
                troom, trank = room_of(target)
                if trank > rank:
                    errors.append(f"{rel} ({room}) includes dlcore/{target} "
                                  f"of the higher room {troom}")
                owner = private_room(target)
                if owner is not None and owner != room and rank != 99:
                    errors.append(f"{rel} ({room}) includes dlcore/{target}, "
                                  f"a private helper of {owner}")
    if headers == 0:
        errors.append(f"no headers under {base}")
    if len(sys.argv) > 2:
        errors += check_page(base, sys.argv[2])
    for e in errors:
        print("check-layers:", e)
    if errors:
        return 1
    page = f"; {sys.argv[2]} names them all" if len(sys.argv) > 2 else ""
    print(f"check-layers: {headers} headers, no include goes up a room or "
          f"into another room's detail/{page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
