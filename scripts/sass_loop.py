"""Count the instructions of a kernel's main loop in its SASS (from compile_kernels.py --sass DIR).

  python scripts/sass_loop.py DIR/_slc_fwd_kernel.sass

The main loop is taken as the span of the widest backward conditional branch: from its target to
the branch. Prints the span, the instruction count and the most common opcodes (predicates and
modifiers dropped), one line per file.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

INSTRUCTION = re.compile(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
BRANCH = re.compile(r"@!?U?P\d BRA 0x([0-9a-f]+)")


def main_loop(text: str) -> tuple[int, int, Counter]:
    """(start, end) addresses of the main loop and its opcode counts."""
    ins = [(int(m.group(1), 16), m.group(2)) for m in map(INSTRUCTION.match, text.splitlines()) if m]
    back = [(a, int(t, 16)) for a, op in ins for t in BRANCH.findall(op) if int(t, 16) < a]
    if not back:
        raise ValueError("no backward branch: no loop")
    end, start = max(back, key=lambda pair: pair[0] - pair[1])
    ops = Counter(re.sub(r"^@!?U?P\w+\s+", "", op).split()[0].split(".")[0] for a, op in ins if start <= a <= end)
    return start, end, ops


def main(paths: list[str]) -> int:
    for path in paths:
        try:
            start, end, ops = main_loop(open(path).read())
        except (OSError, ValueError) as e:
            print(f"sass_loop: {path}: {e}", file=sys.stderr)
            return 2
        top = ", ".join(f"{op} {n}" for op, n in ops.most_common(12))
        print(f"{path}: loop 0x{start:x}-0x{end:x}, {sum(ops.values())} instructions; {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
