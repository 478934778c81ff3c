"""``python -m grader.platforms.gradescope``: what the bundle's run_autograder
and setup.sh run."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from grader.errors import GraderError
from grader.platforms.gradescope.autograder import DEFAULT_ROOT, check_bundle, run_autograder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grader.platforms.gradescope",
        description="Grade the submission in ROOT/submission with the autograder bundle unpacked in ROOT/source "
        "and write ROOT/results/results.json (what Gradescope's run_autograder runs).",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(os.environ.get("AUTOGRADER_ROOT") or DEFAULT_ROOT),
        help="Gradescope's /autograder (default: $AUTOGRADER_ROOT, else /autograder)",
    )
    parser.add_argument(
        "--executor",
        choices=("kernel", "warm"),
        default="kernel",
        help="how the notebook runs (default: kernel, a fresh Jupyter kernel)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the bundle instead: load it and grade its template (setup.sh runs this)",
    )
    args = parser.parse_args(argv)
    if args.check:
        try:
            print(check_bundle(args.root, args.executor))
            return 0
        except GraderError as exc:  # setup.sh fails, and with it the image build
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
    from grader.execution.factory import make_executor
    from grader.execution.sandbox import Policy, hidden_paths
    from grader.platforms.gradescope.bundle import REFERENCES_DIR
    from grader.settings import cache_root

    # the bundle's folder (its references above all) and the grader's cache are not the students'
    policy = Policy(hide=hidden_paths(args.root / "source", args.root / "source" / REFERENCES_DIR, cache_root()))
    try:
        with make_executor(args.executor, policy) as executor:
            results = run_autograder(args.root, executor)
    except GraderError as exc:  # no executor to be had here: the autograder failed, not the student
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0 if results is not None else 2


if __name__ == "__main__":
    sys.exit(main())
