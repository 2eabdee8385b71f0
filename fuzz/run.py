"""Run the fuzz harnesses with libFuzzer (atheris): `python -m fuzz.run [--seconds N] [NAME ...]`.

Each harness runs in its own process for N seconds (libFuzzer's -max_total_time) with a per-input
timeout and an RSS limit, starting from the committed seeds in fuzz/corpus/<name>/; inputs that reach
new code go to outputs/fuzz/<name>/corpus/ and crashing inputs to outputs/fuzz/<name>/crash-* (the
seed folders are never written). A summary table (inputs executed, crashes) ends the run; the exit
status is 1 when any harness crashed.

`python -m fuzz.run NAME FILE...` re-runs one harness on saved inputs (a crash to reproduce);
`python -m fuzz.run NAME -- FLAGS...` passes FLAGS to libFuzzer as they are.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fuzz.harness import CORPUS_DIR, FUZZ_DIR, HARNESSES

REPO = FUZZ_DIR.parent
OUT_DIR = REPO / "outputs" / "fuzz"
TIMEOUT_S = 5  # an input that takes longer is a hang
RSS_LIMIT_MB = 3072  # the config harness imports jax (~600 MB); a parser that allocates beyond this fails
DICTS = {
    "meta_info": "json.dict",
    "meta_stats": "json.dict",
    "meta_v2_jsonl": "json.dict",
    "calibration": "json.dict",
    "bundle_policy_json": "json.dict",
    "lerobot_config": "json.dict",
    "lerobot_processor": "json.dict",
    "bundle_params": "safetensors.dict",
    "lerobot_safetensors": "safetensors.dict",
    "wire": "msgpack.dict",
    "tokenizer": "json.dict",
    "rlds_metadata": "json.dict",
}


def libfuzzer_flags(name: str, seconds: int) -> list[str]:
    out = OUT_DIR / name
    (out / "corpus").mkdir(parents=True, exist_ok=True)
    flags = [
        f"-max_total_time={seconds}",
        f"-timeout={TIMEOUT_S}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        "-print_final_stats=1",
        f"-artifact_prefix={out}/",
    ]
    if name in DICTS:
        flags.append(f"-dict={FUZZ_DIR / 'dicts' / DICTS[name]}")
    return [*flags, str(out / "corpus"), str(CORPUS_DIR / name)]


def run_one(name: str, seconds: int) -> dict:
    """Fuzz one harness in a child process; its executed-input count, crash artifacts and exit status."""
    out = OUT_DIR / name
    before = set(out.glob("crash-*")) | set(out.glob("timeout-*")) | set(out.glob("oom-*"))
    cmd = [sys.executable, "-m", "fuzz.run", name, "--", *libfuzzer_flags(name, seconds)]
    t0 = time.monotonic()
    # libFuzzer ends the child with exit(), which skips Python's atexit: the harness's scratch folders
    # go into a temporary folder this process removes
    with tempfile.TemporaryDirectory(prefix=f"jrobot-fuzz-{name}-") as tmp:
        env = {**os.environ, "TMPDIR": tmp}
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, errors="replace", env=env)
    wall = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    (out / "last.log").write_text(log)
    executed = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    after = set(out.glob("crash-*")) | set(out.glob("timeout-*")) | set(out.glob("oom-*"))
    return {
        "name": name,
        "executed": int(executed[-1]) if executed else None,
        "artifacts": sorted(str(p.relative_to(REPO)) for p in after - before),
        "rc": proc.returncode,
        "wall": wall,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in HARNESSES and (len(argv) == 1 or argv[1] == "--" or Path(argv[1]).exists()):
        # one harness in this process: libFuzzer flags after "--", or files to re-run
        from fuzz.harness import run_atheris

        name, rest = argv[0], argv[1:]
        run_atheris(name, rest[1:] if rest[:1] == ["--"] else rest)
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=60, help="fuzzing time per harness (default 60)")
    parser.add_argument("names", nargs="*", help=f"harnesses to run (default: all of {', '.join(HARNESSES)})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in HARNESSES]
    if unknown:
        parser.error(f"unknown harness(es) {unknown}; known: {', '.join(HARNESSES)}")
    results = []
    for name in args.names or HARNESSES:
        print(f"fuzz: {name} for {args.seconds} s ...", flush=True)
        r = run_one(name, args.seconds)
        results.append(r)
        status = "ok" if r["rc"] == 0 and not r["artifacts"] else f"CRASH (rc {r['rc']}) {r['artifacts']}"
        print(f"fuzz: {name}: {r['executed']} inputs in {r['wall']:.0f} s: {status}", flush=True)
    print("\n| harness | inputs executed | crashes |\n|---|---:|---|")
    for r in results:
        crashes = ", ".join(r["artifacts"]) or ("none" if r["rc"] == 0 else f"exit status {r['rc']}")
        print(f"| {r['name']} | {r['executed']} | {crashes} |")
    return 1 if any(r["rc"] != 0 or r["artifacts"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
