"""What every fixture script shares: its command line (ctest runs `<script>.py --out DIR --test-data DIR`,
see tests/CMakeLists.txt) and the DONE file that the C++ tests wait for (tests/test_util.cpp)."""
import argparse
import os
import shutil


def start(description=None, test_data_required=False):
    """Parses --out and --test-data, empties the output folder (no stale files, no old DONE) and returns
    the parsed arguments."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", required=True, help="folder the fixture files are written to")
    parser.add_argument("--test-data", required=test_data_required, default="",
                        help="the test data folder, tests/data (openai-clip/ holds OpenAI's BPE vocabulary)")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    return args


def finish(out):
    """Writes OUT/DONE, last: the tests read the folder only once it is there."""
    with open(os.path.join(out, "DONE"), "w") as f:
        f.write("ok\n")
