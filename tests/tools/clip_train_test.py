#!/usr/bin/env python3
"""End-to-end tests of the clip-train tool: flag errors (exit 2) and run errors (exit 1) as one line on
stderr, --help listing every flag with its default, a short run's JSON-lines log and checkpoints, and a
2-process run under torchrun (c10d Gloo on localhost) against a 1-process run with the same global batch:
local loss with gather-with-grad makes the two the same computation, so their loss trajectories must
agree to float rounding (tolerance 2e-4 per step).

Run by ctest with env CLIPGUIDE_BINARY_DIR and CLIPGUIDE_PYTHON (torchrun sits beside that python).
Prints a closing 'N passed, N failed' line; exit status 1 on any failure.
"""
import json
import os
import subprocess
import sys
import tempfile
import traceback

BIN = os.path.join(os.environ["CLIPGUIDE_BINARY_DIR"], "tools", "clip-train")
TORCHRUN = os.path.join(os.path.dirname(os.environ.get("CLIPGUIDE_PYTHON", sys.executable)), "torchrun")
TINY = json.dumps({"embed_dim": 32,
                   "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
                   "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}})
COMMON = ["--model", TINY, "--train-data", "shapes", "--lr", "1e-3", "--warmup", "2", "--workers", "1",
          "--bpe-vocab-size", "600", "--seed", "3"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def run(args, ok=True, cmd=None):
    proc = subprocess.run((cmd or [BIN]) + args, capture_output=True, text=True, timeout=600, env=ENV)
    if ok and proc.returncode != 0:
        raise AssertionError(f"{' '.join((cmd or [BIN]) + args)[:300]} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


class Skip(Exception):
    pass


def run_torchrun(args):
    """torchrun --no-python --standalone --nproc-per-node 2 clip-train ARGS; Skip when unavailable."""
    if not os.path.exists(TORCHRUN):
        raise Skip(f"no torchrun at {TORCHRUN}")
    p = run(["--no-python", "--standalone", "--nproc-per-node", "2", BIN] + args, ok=False, cmd=[TORCHRUN])
    if p.returncode != 0 and "without c10d Gloo" in p.stderr:
        raise Skip("clip-train was built without gloo's headers (libgloo-dev)")
    if p.returncode != 0:
        raise AssertionError(f"torchrun clip-train exited {p.returncode}: {p.stderr[-3000:]}")
    return p


def log_losses(path):
    with open(path) as f:
        return [json.loads(line)["loss"] for line in f if '"loss"' in line]


def test_help_lists_every_flag_with_default():
    out = run(["--help"]).stdout
    for flag in ["--train-data", "--val-data", "--dataset-type", "--csv-img-key", "--csv-caption-key",
                 "--csv-separator", "--batch-size", "--lr", "--wd", "--warmup", "--epochs", "--train-num-samples",
                 "--steps", "--precision", "--accum-freq", "--grad-checkpointing", "--model", "--vocab", "--siglip",
                 "--local-loss", "--gather-with-grad", "--seed", "--workers", "--save-frequency",
                 "--save-every-steps", "--resume", "--logs", "--name", "--zeroshot-frequency", "--linear-probe"]:
        assert flag in out, flag
    assert "=0.0005" in out and "=fp32" in out and "--batch-size INT:POSITIVE=64" in out, out


def test_flag_errors_exit_2():
    for args in (["--no-such-flag"], ["--precision", "fp8"], ["--batch-size", "0"], ["--dataset-type", "parquet"],
                 ["--csv-separator", "ab"]):
        p = run(args, ok=False)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert p.stderr.startswith("clip-train: error:") and p.stderr.count("\n") == 1, p.stderr


def test_run_errors_exit_1():
    with tempfile.TemporaryDirectory() as d:
        cases = [(["--resume", "latest", "--steps", "1"], "no checkpoint yet"),
                 (["--train-data", os.path.join(d, "missing.csv"), "--steps", "1"], "missing.csv"),
                 ([], "--steps or --train-num-samples")]
        for args, words in cases:
            p = run(COMMON + ["--logs", d] + args, ok=False)
            assert p.returncode == 1, (args, p.returncode, p.stderr)
            assert p.stderr.startswith("clip-train: error:") and words in p.stderr, (args, p.stderr)
            assert p.stderr.count("\n") == 1, p.stderr


def test_short_run_logs_checkpoints_and_evaluates():
    with tempfile.TemporaryDirectory() as d:
        p = run(COMMON + ["--logs", d, "--name", "r", "--batch-size", "8", "--steps", "4", "--save-every-steps", "2",
                          "--zeroshot-frequency", "4", "--zeroshot-samples", "32"])
        assert "step 4/4" in p.stderr and "eval step 4:" in p.stderr, p.stderr
        run_dir = os.path.join(d, "r")
        assert len(log_losses(os.path.join(run_dir, "out.jsonl"))) == 4
        assert open(os.path.join(run_dir, "checkpoints", "latest")).read() == "step_00000004\n"
        assert os.path.exists(os.path.join(run_dir, "checkpoints", "step_00000002", "model.safetensors"))
        # Resuming a finished run does nothing more; resuming for more steps continues from step 4.
        p = run(COMMON + ["--logs", d, "--name", "r", "--batch-size", "8", "--steps", "6", "--resume", "latest"])
        assert "step 5/6" in p.stderr and "step 1/" not in p.stderr, p.stderr
        # Evaluation on its own, of any CLIP folder: here the checkpoint with its own vocabulary.
        ckpt = os.path.join(run_dir, "checkpoints", "step_00000006")
        p = run(["--eval-only", "--pretrained", ckpt, "--vocab", os.path.join(ckpt, "vocab"),
                 "--zeroshot-samples", "32"])
        result = json.loads(p.stdout)
        assert 0 <= result["linear_probe"] <= 1 and set(result["zero_shot"]) == {
            "background", "colour", "position", "shape", "size"}, result
        p = run(["--eval-only"], ok=False)
        assert p.returncode == 1 and "--pretrained" in p.stderr, p.stderr


def test_grad_checkpointing_matches_the_plain_run():
    with tempfile.TemporaryDirectory() as d:
        flags = ["--logs", d, "--batch-size", "8", "--steps", "3", "--save-frequency", "0"]
        run(COMMON + flags + ["--name", "plain"])
        run(COMMON + flags + ["--name", "ckpt", "--grad-checkpointing"])
        plain = log_losses(os.path.join(d, "plain", "out.jsonl"))
        ckpt = log_losses(os.path.join(d, "ckpt", "out.jsonl"))
        assert len(plain) == 3 and max(abs(a - b) for a, b in zip(plain, ckpt)) < 1e-6, (plain, ckpt)


def test_two_processes_match_one():
    flags = ["--steps", "6", "--local-loss", "--gather-with-grad", "--save-frequency", "0"]
    with tempfile.TemporaryDirectory() as d:
        run(COMMON + flags + ["--logs", d, "--name", "one", "--batch-size", "16"])
        p = run_torchrun(COMMON + flags + ["--logs-dir", d, "--name", "two", "--batch-size", "8"])
        assert "gloo, rank 0 of 2" in p.stderr, p.stderr
        one = log_losses(os.path.join(d, "one", "out.jsonl"))
        two = log_losses(os.path.join(d, "two", "out.jsonl"))
        assert len(one) == len(two) == 6, (one, two)
        diffs = [abs(a - b) for a, b in zip(one, two)]
        print("  1 process x 16:", " ".join(f"{x:.6f}" for x in one))
        print("  2 processes x 8:", " ".join(f"{x:.6f}" for x in two))
        print(f"  max |diff| {max(diffs):.3g}")
        assert max(diffs) < 2e-4, diffs
        # Only rank 0 writes: one log, one checkpoint folder.
        assert os.listdir(os.path.join(d, "two", "checkpoints")) != []


def test_two_processes_siglip_and_resume():
    """SigLIP with gathered texts (gather with grad) matches one process; a 2-process run resumed from its
    step-3 checkpoint repeats the uninterrupted run's steps 4-6 exactly."""
    flags = ["--steps", "6", "--siglip", "--gather-with-grad", "--save-frequency", "0"]
    with tempfile.TemporaryDirectory() as d:
        run(COMMON + flags + ["--logs", d, "--name", "one", "--batch-size", "16"])
        run_torchrun(COMMON + flags + ["--logs-dir", d, "--name", "two", "--batch-size", "8", "--save-every-steps", "3"])
        one_l = log_losses(os.path.join(d, "one", "out.jsonl"))
        two_l = log_losses(os.path.join(d, "two", "out.jsonl"))
        print("  siglip 1 x 16:", " ".join(f"{x:.6f}" for x in one_l))
        print("  siglip 2 x 8: ", " ".join(f"{x:.6f}" for x in two_l))
        assert max(abs(a - b) for a, b in zip(one_l, two_l)) < 2e-4, (one_l, two_l)
        # Resume the 2-process run from step 3 under a new name (copy of its checkpoints).
        import shutil
        os.makedirs(os.path.join(d, "again"))
        shutil.copytree(os.path.join(d, "two", "checkpoints", "step_00000003"),
                        os.path.join(d, "again", "checkpoints", "step_00000003"))
        with open(os.path.join(d, "again", "checkpoints", "latest"), "w") as f:
            f.write("step_00000003\n")
        run_torchrun(COMMON + flags + ["--logs-dir", d, "--name", "again", "--batch-size", "8", "--resume", "latest"])
        resumed = log_losses(os.path.join(d, "again", "out.jsonl"))
        print("  resumed at 3: ", " ".join(f"{x:.6f}" for x in resumed))
        assert resumed == two_l[3:], (resumed, two_l[3:])


def main():
    tests = [(k, v) for k, v in globals().items() if k.startswith("test_") and callable(v)]
    only = sys.argv[1:]
    passed = failed = 0
    for name, fn in tests:
        if only and name not in only:
            continue
        try:
            fn()
            print(f"PASS {name}")
            passed += 1
        except Skip as e:
            print(f"SKIP {name}: {e}")
        except Exception:
            print(f"FAIL {name}")
            traceback.print_exc()
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
