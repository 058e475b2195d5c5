#!/usr/bin/env python3
"""Writes the program a docs page holds: its ```cpp blocks, in order.

    scripts/extract-doc-program.py docs/pipeline.md out/pipeline_doc.cpp

Each block is preceded by a #line directive, so a compiler error names the
page and the line of the page. The output is rewritten only when its content
changes, so an edit to the page's prose rebuilds nothing. A page without a
```cpp block, or with one left open, is an error.
"""
import os
import sys


def extract(page_path):
    blocks = []
    current = None
    with open(page_path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            stripped = line.strip()
            if current is None:
                if stripped == "```cpp":
                    current = [f'#line {number + 1} "{page_path}"\n']
            elif stripped == "```":
                blocks.append("".join(current))
                current = None
            else:
                current.append(line)
    if current is not None:
        sys.exit(f"extract-doc-program: {page_path}: a ```cpp block is not closed")
    if not blocks:
        sys.exit(f"extract-doc-program: {page_path}: no ```cpp block")
    return "".join(blocks)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: extract-doc-program.py PAGE.md OUT.cpp")
    page, out = sys.argv[1], sys.argv[2]
    program = f"// Generated from {page} by scripts/extract-doc-program.py.\n" + extract(page)
    try:
        with open(out, encoding="utf-8") as f:
            if f.read() == program:
                return
    except FileNotFoundError:
        pass
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(program)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
