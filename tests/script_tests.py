"""The runner the script tests (tests/tools/*_test.py, tests/gui/*_test.py) share: every test_* function of
a test module, one after the other, with gtest-like lines; exit status 1 when one failed. Also the helpers
the tool tests share: running a program, reading a PNG's pixels, the losses a progress log prints."""
import os
import re
import subprocess
import traceback


def tool_runner(binary):
    """run(*args, ok=True, timeout=300, env=None): the CompletedProcess of binary with args (text output);
    an AssertionError with its stderr when ok and it exits non-zero."""
    def run(*args, ok=True, timeout=300, env=None):
        proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout, env=env)
        if ok and proc.returncode != 0:
            name = os.path.basename(binary)
            raise AssertionError(f"{name} {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc
    return run


def pixels(path):
    """The image's RGB pixels as an int64 (H, W, 3) array."""
    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int64)


def losses(stderr):
    """Every 'loss X' value a progress log printed, in order."""
    return [float(m) for m in re.findall(r"loss (\S+)", stderr)]


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
