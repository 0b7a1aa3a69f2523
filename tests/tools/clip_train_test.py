#!/usr/bin/env python3
"""End-to-end tests of the clip-train tool: flag errors (exit 2) and run errors (exit 1) as one line on
stderr, --help listing every flag with its default, a short run's JSON-lines log and checkpoints, and a
2-process run under torchrun (c10d Gloo on localhost) against a 1-process run with the same global batch:
local loss with gather-with-grad makes the two the same computation, so their loss trajectories must
agree to float rounding (tolerance 2e-4 per step). Faults: runs killed with SIGKILL at random moments (also
while a checkpoint is written) and resumed give exactly the uninterrupted run's losses; corrupt checkpoints
are one clear error naming the file; a divergent run stops at the first non-finite loss without saving it.

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


def log_records(path):
    """(step, loss) of every loss record in the log, in order (a resumed run repeats steps); a line cut by
    a kill is skipped (the trainer ends it on the next start)."""
    out = []
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if "loss" in r:
                out.append((r["step"], r["loss"]))
    return out


def test_kill_9_then_resume_equals_the_uninterrupted_run():
    """clip-train killed with SIGKILL at random moments (checkpoints every step, so many kills land while
    one is being written), then resumed from `latest` each time until done: every logged step's loss,
    the repeated ones included, equals the uninterrupted run's exactly, and no temporary folder is left
    behind once the run has finished."""
    import random
    import signal
    import time
    flags = COMMON + ["--batch-size", "8", "--steps", "16", "--save-every-steps", "1"]
    with tempfile.TemporaryDirectory() as d:
        start = time.time()
        run(flags + ["--logs", d, "--name", "whole"])
        whole_s = time.time() - start
        whole = dict(log_records(os.path.join(d, "whole", "out.jsonl")))
        assert sorted(whole) == list(range(1, 17)), whole
        rng = random.Random(7)
        kills = resumes = 0
        ckpts = os.path.join(d, "killed", "checkpoints")
        for attempt in range(40):
            args = flags + ["--logs", d, "--name", "killed"]
            if os.path.exists(os.path.join(ckpts, "latest")):
                args += ["--resume", "latest"]
                resumes += 1
            p = subprocess.Popen([BIN] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
            try:
                p.communicate(timeout=rng.uniform(0.05, 1.0) * whole_s)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.communicate()
                kills += 1
                continue
            assert p.returncode == 0, f"attempt {attempt} exited {p.returncode}"
            break
        else:
            raise AssertionError("the killed run never finished in 40 attempts")
        records = log_records(os.path.join(d, "killed", "out.jsonl"))
        print(f"  {kills} kills, {resumes} resumes, {len(records)} loss records for 16 steps")
        assert kills >= 3, f"only {kills} kills: the random moments missed the run"
        assert {s for s, _ in records} == set(whole), sorted({s for s, _ in records})
        wrong = [(s, l, whole[s]) for s, l in records if l != whole[s]]
        assert not wrong, f"losses differ from the uninterrupted run: {wrong[:5]}"
        left = [f for f in os.listdir(ckpts) if ".tmp-" in f]
        assert not left, f"temporary checkpoint folders left: {left}"


def test_a_corrupt_checkpoint_is_a_clear_error():
    with tempfile.TemporaryDirectory() as d:
        run(COMMON + ["--logs", d, "--name", "r", "--batch-size", "8", "--steps", "2", "--save-every-steps", "1"])
        step1 = os.path.join(d, "r", "checkpoints", "step_00000001")
        weights = os.path.join(step1, "model.safetensors")
        with open(weights, "r+b") as f:
            f.truncate(os.path.getsize(weights) // 2)
        optimizer = os.path.join(d, "r", "checkpoints", "step_00000002", "optimizer.safetensors")
        with open(optimizer, "r+b") as f:
            f.seek(8)
            f.write(b"{{{{not json")
        import shutil
        shutil.copytree(os.path.dirname(optimizer).replace("00000002", "00000001"), os.path.join(d, "other"))
        shutil.copy(os.path.join(os.path.dirname(optimizer), "model.safetensors"), os.path.join(d, "other"))
        state = os.path.join(d, "other", "state.json")
        with open(state, "w") as f:
            f.write('{"step": "three"')
        for folder, needle in [(step1, "model.safetensors"), (os.path.dirname(optimizer), "optimizer.safetensors"),
                               (os.path.dirname(state), "state.json"), (os.path.join(d, "none"), "none")]:
            p = run(COMMON + ["--logs", d, "--name", "r", "--batch-size", "8", "--steps", "4", "--resume", folder],
                    ok=False)
            lines = [l for l in p.stderr.splitlines() if l.strip()]
            assert p.returncode == 1 and len(lines) == 1 and needle in lines[0], (folder, p.returncode, p.stderr)
            print(f"  {lines[0]}")


def test_a_divergent_run_stops_at_the_first_non_finite_loss():
    """A learning rate of 1e6 sends the weights to inf/NaN: the run stops with one line naming the step,
    exit 1, and no checkpoint of non-finite weights is written (the last one saved loads and is finite)."""
    with tempfile.TemporaryDirectory() as d:
        args = COMMON + ["--logs", d, "--name", "r", "--batch-size", "8", "--steps", "40", "--save-every-steps", "1"]
        args[args.index("--lr") + 1] = "1e6"
        p = run(args, ok=False)
        lines = [l for l in p.stderr.splitlines() if "error" in l]
        assert p.returncode == 1 and len(lines) == 1 and (
            "NaN" in lines[0] or "infinite" in lines[0]), p.stderr[-2000:]
        print(f"  {lines[0]}")
        bad_step = int(lines[0].split("step ")[1].split(":")[0])
        ckpts = os.path.join(d, "r", "checkpoints")
        saved = sorted(f for f in os.listdir(ckpts) if f.startswith("step_"))
        assert saved and int(saved[-1][5:]) == bad_step - 1, (saved, bad_step)
        q = run(["--eval-only", "--pretrained", os.path.join(ckpts, saved[-1]), "--zeroshot-samples", "16"], ok=False)
        assert q.returncode == 0 and "null" not in q.stdout and "nan" not in q.stdout.lower(), (q.stdout, q.stderr)


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
