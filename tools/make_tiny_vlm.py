"""Write a CPU-sized SmolVLM folder (`jrobot.policies.smolvla.tiny_vlm`; run by hand, not by the tests).

    python tools/make_tiny_vlm.py OUT_DIR ["extra instruction" ...]

With no extra instructions and OUT_DIR = `jrobot.policies.smolvla.tiny_vlm.SHIPPED` it rewrites the
folder the CPU VLA config names; the extra instructions' words join the tokenizer's vocabulary.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jrobot.policies.smolvla.tiny_vlm import write_tiny_vlm


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    out = write_tiny_vlm(argv[0], argv[1:])
    print(f"wrote a tiny SmolVLM folder to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
