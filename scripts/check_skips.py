#!/usr/bin/env python3
"""Fails when a test other than those labelled `cuda` (they need a GPU) was skipped in the last ctest run.

    scripts/check_skips.py BUILD_DIR      # reads BUILD_DIR/ctest-junit.xml (ctest --output-junit)

A skipped test proves nothing: a bare clone has everything the suite needs (tests/data carries OpenAI's
vocabulary), so a skip outside the CUDA tests means something is missing or broken. Prints the skipped
tests; exit status 1 when any is not allowed.
"""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET


def cuda_tests(build):
    """Names of the tests labelled cuda (ctest -N -L cuda)."""
    out = subprocess.run(["ctest", "--test-dir", build, "-N", "-L", "^cuda$"], capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Test") and ":" in line:  # "Test #213: GraphedImageEncoder.MatchesEagerOnCuda"
            names.add(line.split(":", 1)[1].strip())
    return names


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    build = sys.argv[1]
    report = os.path.join(build, "ctest-junit.xml")
    if not os.path.exists(report):
        sys.exit(f"check_skips: no {report} (run ctest with --output-junit)")
    allowed = cuda_tests(build)
    skipped = []
    for case in ET.parse(report).getroot().iter("testcase"):
        if case.get("status") == "notrun" or case.find("skipped") is not None:
            skipped.append(case.get("name"))
    bad = [name for name in skipped if name not in allowed]
    for name in skipped:
        print(f"check_skips: skipped {name}{'' if name in allowed else '  <- not a CUDA test: not allowed'}")
    if bad:
        print(f"check_skips: {len(bad)} test(s) skipped that must run on every machine")
        return 1
    print(f"check_skips: {len(skipped)} skipped, all CUDA tests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
