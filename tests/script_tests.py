"""The runner the script tests (tests/tools/*_test.py, tests/gui/*_test.py) share: every test_* function of
a test module, one after the other, with gtest-like lines; exit status 1 when one failed."""
import os
import traceback


def run_tests(namespace, vocab, sort=True, where="", only=(), skip=()):
    """namespace: the module's globals(); vocab: the vocabulary every such test needs (from tests/data);
    sort: name order, else definition order; where: said after the tally (e.g. where the files are);
    only / skip: test names to run alone / to leave out (a test registered on its own in CTest)."""
    if not os.path.exists(vocab):
        print(f"FAIL: no vocabulary at {vocab} (tests/data is part of the repository)")
        return 1
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    unknown = [n for n in (*only, *skip) if n not in dict(tests)]
    if unknown:
        print(f"FAIL: no such test: {', '.join(unknown)}")
        return 1
    tests = [(n, f) for n, f in tests if (not only or n in only) and n not in skip]
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
