"""`python -m bench.micro [NAME ...]`: run the micro-benchmarks of the compiled core that exist.

Each one is its own module with its own entry point (`python -m bench.micro.bench_trie`), written
next to the code it measures; this runner only finds them by name and runs each in a fresh
interpreter, so that one benchmark's heap and caches do not colour the next, and a missing or
failing one does not stop the others. Extra arguments after `--` are passed to each.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys

KNOWN = ("bench_trie", "bench_bucket")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", default=list(KNOWN), help=f"benchmarks to run (default: {' '.join(KNOWN)})")
    p.epilog = "Arguments after -- go to each benchmark."
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = p.parse_args(argv[:cut]), argv[cut + 1 :]
    failed = []
    ran = 0
    for name in args.names:
        module = f"bench.micro.{name}"
        if importlib.util.find_spec(module) is None:
            print(f"== {module}: not written yet, skipped")
            continue
        print(f"== {module}", flush=True)
        ran += 1
        if subprocess.run([sys.executable, "-m", module, *extra]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    if not ran:
        print("no micro-benchmark found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
