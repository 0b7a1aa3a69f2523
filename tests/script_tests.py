"""The runner the script tests (tests/tools/*_test.py, tests/gui/*_test.py) share: every test_* function of
a test module, one after the other, with gtest-like lines; exit status 1 when one failed."""
import os
import traceback


def run_tests(namespace, vocab, sort=True, where=""):
    """namespace: the module's globals(); vocab: the vocabulary every such test needs (from tests/data);
    sort: name order, else definition order; where: said after the tally (e.g. where the files are)."""
    if not os.path.exists(vocab):
        print(f"FAIL: no vocabulary at {vocab} (tests/data is part of the repository)")
        return 1
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    if sort:
        tests.sort()
    failed = 0
    for name, fn in tests:
        print(f"[ RUN  ] {name}", flush=True)
        try:
            fn()
            print(f"[  OK  ] {name}", flush=True)
        except Exception:
            failed += 1
            traceback.print_exc()
            print(f"[ FAIL ] {name}", flush=True)
    print(f"{len(tests) - failed} passed, {failed} failed{where}")
    return 1 if failed else 0
