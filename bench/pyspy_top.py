"""Summarise a py-spy `--format raw` profile (collapsed stacks): top functions by self and total samples.

Usage: ``.venv/bin/python -m bench.pyspy_top PROFILE.txt [--top 30] [--grep TEXT]``
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r" \(([^)]*?)(?::\d+)?\)$")


def frames(stack: str) -> list[str]:
    """The frames of one collapsed stack, without line numbers, idle process/thread frames left out."""
    out = []
    for frame in stack.split(";"):
        frame = _LINE.sub(
            lambda m: f" ({m.group(1).rsplit('/', 2)[-1] if '/' in m.group(1) else m.group(1)})", frame
        )
        if frame.startswith(("process ", "thread ")):
            continue
        out.append(frame)
    return out


def summarise(path: Path, top: int, grep: str | None) -> str:
    """Self and inclusive sample counts per function."""
    self_c: Counter[str] = Counter()
    total_c: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        fs = frames(stack)
        if grep and not any(grep in f for f in fs):
            continue
        samples += n
        if fs:
            self_c[fs[-1]] += n
        for f in set(fs):
            total_c[f] += n
    lines = [f"{samples} samples{f' matching {grep!r}' if grep else ''}", "", "self%   function"]
    lines += [f"{100 * c / samples:5.1f}   {f}" for f, c in self_c.most_common(top)]
    lines += ["", "total%  function"]
    lines += [f"{100 * c / samples:5.1f}   {f}" for f, c in total_c.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the summary of one profile."""
    p = argparse.ArgumentParser(prog="python -m bench.pyspy_top")
    p.add_argument("profile", type=Path)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--grep", help="only stacks with a frame containing this text")
    args = p.parse_args(argv)
    print(summarise(args.profile, args.top, args.grep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
