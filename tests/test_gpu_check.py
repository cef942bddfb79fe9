"""The GPU check (scripts/gpu_check.py) and what it decides.

Its plan runs on the CPU as a CUDA machine runs it (aot_eager in place of inductor, so no C++
compiler is needed), inside the same kind of budget; the budget logic and the verdict are
checked on hand-made items and reports; the committed GPU record and ``trainer.compile=auto``
on CUDA are held to each other; and the CUDA-graph guards of ganlab.execution (logs copied
out of a replay's memory, failures in the first calls undone) are checked with stand-ins that
behave as a replayed graph does.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganlab import execution
from ganlab.build import build_trainer
from tests.conftest import tiny

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
RECORDS = ROOT / "docs" / "gpu"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = load_script()


# --- the plan, on the CPU ---------------------------------------------------------------------


@pytest.mark.slow
def test_the_plan_runs_on_the_cpu_inside_its_budget(tmp_path, mnist_root):
    """``--device cpu --budget-s 120``: the items in the plan's order, none started whose
    estimate did not fit in what was left, every one passing, the rest skipped with the
    reason, and the JSON and the table written."""
    out = tmp_path / "check"
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--budget-s", "120"]
    command += ["--backend", "aot_eager", "--data-root", str(mnist_root), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["device_type"] == "cpu" and report["budget_s"] == 120
    plan = [item.name for item in gpu_check.plan()]
    ran = [item["name"] for item in report["items"]]
    skipped = [item["name"] for item in report["skipped"]]
    assert sorted(ran + skipped) == sorted(plan)
    assert ran == [name for name in plan if name in ran]  # in the plan's order
    assert ran[:3] == ["learning", "equivalence vanilla", "equivalence hinge+sn+ema"]
    for item in report["items"]:
        assert item["ok"], item
        assert item["started_s"] + item["estimate_s"] <= report["budget_s"]
    for item in report["skipped"]:
        assert item["estimate_s"] > item["left_s"]
    learning = next(item for item in report["items"] if item["name"] == "learning")
    assert learning["runs"]["reduce-overhead"]["execution"]["compile"] == "reduce-overhead"
    assert learning["runs"]["off"]["execution"]["compile"] == "off"
    assert report["verdict"]["auto_cuda"] == "off"  # a CPU record never turns CUDA's on
    table = (out / "gpu_check.md").read_text()
    # Which throughput rows fit in the budget depends on the machine's load (a busy 2-core
    # CI runner takes twice as long for the first items): each row that ran is in the table.
    for name in ran:
        if name.startswith("throughput "):
            model, loss, batch, mode = name.split()[1:]
            batch = r"\d+" if batch == "big" else batch  # "big": the device's large batch
            assert re.search(rf"\| {model} \| {loss} \| {batch} \| {re.escape(mode)} \|", table)
    assert "gpu_check: " in done.stdout and "all passed" in done.stdout


@pytest.mark.slow
def test_the_offline_wheels_install_without_an_index_and_import(tmp_path):
    """scripts/offline_wheels.sh, then README's install line on a machine with no index:
    the four packages import from the target folder."""
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "offline_wheels.sh"), str(wheels)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    files = sorted(wheels.glob("*.whl"))
    assert sorted(p.name.split("-")[0] for p in files) == [
        "antlr4_python3_runtime",
        "hydra_core",
        "mlxtend",
        "omegaconf",
    ]
    assert all(p.name.endswith("-py3-none-any.whl") for p in files)  # any platform
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    subprocess.run([*install, "--target", str(site), *map(str, files)], check=True, timeout=300)
    probe = "import antlr4, hydra, mlxtend, omegaconf; print(hydra.__file__, antlr4.__file__)"
    shown = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
        check=True,
    ).stdout
    assert shown.count(str(site)) == 2


# --- the budget and the verdict, on hand-made items -------------------------------------------


def a_check(tmp_path, budget_s: float):
    return gpu_check.Check(
        torch.device("cpu"),
        "unused",
        "aot_eager",
        budget_s,
        tmp_path,
        gpu_check.SIZES["cpu"],
        gpu_check.PRIORS["cpu"],
    )


def test_items_that_do_not_fit_are_skipped_and_the_report_is_saved_after_each(tmp_path):
    check = a_check(tmp_path, budget_s=50)
    seen = []

    def run(name):
        def item(c):
            saved = json.loads((tmp_path / "gpu_check.json").read_text()) if seen else None
            seen.append((name, saved and [i["name"] for i in saved["items"]]))
            if name == "broken":
                raise RuntimeError("a compiler error")
            return {"ok": True}

        return item

    items = [
        gpu_check.Item("first", lambda c: 10, run("first")),
        gpu_check.Item("too big", lambda c: 60, run("too big")),
        gpu_check.Item("broken", lambda c: 10, run("broken")),
        gpu_check.Item("last", lambda c: 10, run("last")),
    ]
    gpu_check.run_plan(check, items)
    assert [name for name, _ in seen] == ["first", "broken", "last"]
    assert seen[2][1] == ["first", "broken"]  # written after every item
    report = check.report
    assert report["skipped"][0]["name"] == "too big" and report["skipped"][0]["estimate_s"] == 60
    broken = report["items"][1]
    assert broken["ok"] is False and "a compiler error" in broken["error"]
    assert [i["name"] for i in report["items"]] == ["first", "broken", "last"]


def test_an_estimate_follows_the_longest_compilation_measured(tmp_path):
    check = a_check(tmp_path, budget_s=100)
    assert check.compile_cost() == gpu_check.PRIORS["cpu"].compile_s
    check.compile_s = 3.5
    assert check.compile_cost() == 3.5


def report_with(**overrides) -> dict:
    """A CUDA report whose core checks passed and whose compiled row is 2x eager."""
    items = [
        {"name": "learning", "ok": True},
        {"name": "equivalence vanilla", "ok": True},
        {"name": "equivalence hinge+sn+ema", "ok": True},
    ]
    rows = {"eager": 100.0, gpu_check.GRAPHS: 200.0}
    for mode, speed in rows.items():
        items.append(
            {
                "name": f"throughput dcgan vanilla 64 {mode}",
                "model": "dcgan",
                "loss": "vanilla",
                "batch": 64,
                "mode": mode,
                "it_per_s": overrides.get(mode, speed),
                "ok": True,
            }
        )
    failed = overrides.get("failed")
    for item in items:
        item["ok"] = item["name"] != failed
    items = [item for item in items if item["name"] != overrides.get("missing")]
    return {"device_type": overrides.get("device_type", "cuda"), "items": items}


def test_the_verdict_turns_auto_on_only_when_right_and_faster():
    assert gpu_check.verdict(report_with())["auto_cuda"] == gpu_check.GRAPHS
    for case in (
        {"failed": "equivalence vanilla"},
        {"failed": "learning"},
        {"missing": "equivalence hinge+sn+ema"},
        {gpu_check.GRAPHS: 90.0},  # slower than eager
        {"device_type": "cpu"},
    ):
        decided = gpu_check.verdict(report_with(**case))
        assert decided["auto_cuda"] == "off", case
        assert decided["why"]


# --- the committed record and auto -------------------------------------------------------------


def cuda_records() -> list[tuple[Path, dict]]:
    records = [(p, json.loads(p.read_text())) for p in sorted(RECORDS.glob("gpu_check_*.json"))]
    return [(p, r) for p, r in records if r.get("device_type") == "cuda"]


def test_auto_on_cuda_is_what_the_newest_gpu_record_verified():
    """``CUDA_AUTO`` is eager until a committed record verifies a compiled mode; then it is
    the newest record's verdict, recomputed here from that record's items (so neither a
    hand-edited verdict nor a constant changed without a record passes)."""
    records = cuda_records()
    if not records:
        assert execution.CUDA_AUTO == "off" and execution.CUDA_AUTO_RECORD is None
        return
    path, newest = max(records, key=lambda pr: (pr[1]["date"], pr[0].name))
    decided = gpu_check.verdict(newest)
    assert decided == newest["verdict"]
    assert execution.CUDA_AUTO == decided["auto_cuda"]
    assert execution.CUDA_AUTO_RECORD == path.relative_to(ROOT).as_posix()


def test_the_record_holds_what_the_docs_report():
    """The GPU table of docs/performance.md is the record's table (scripts/gpu_check.py writes
    the record's)."""
    for path, record in cuda_records():
        table = gpu_check.table(record)
        assert path.with_suffix(".md").read_text() == table
        page = (ROOT / "docs" / "performance.md").read_text()
        rows = [line for line in table.splitlines() if line.startswith("| dcgan")]
        assert rows and all(row in page for row in rows)


def test_auto_says_which_mode_it_picked_and_why():
    mode, why = execution.resolve_compile("auto", torch.device("cpu"))
    assert mode == "off" and "eager on cpu" in why and "0.64x" in why
    mode, why = execution.resolve_compile("auto", torch.device("cuda"))
    assert mode == execution.CUDA_AUTO
    assert (execution.CUDA_AUTO_RECORD or "no GPU record") in why
    assert execution.resolve_compile("default", torch.device("cuda")) == (
        "default",
        "trainer.compile=default was asked for",
    )


def test_the_start_up_line_and_results_say_how_the_iteration_runs(make_cfg, caplog):
    cfg = make_cfg(*tiny("mlp"), "data=mnist_sample")
    with caplog.at_level(logging.INFO, logger="ganlab.build"):
        trainer = build_trainer(cfg, torch.device("cpu"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("iteration")]
    assert lines == [
        "iteration: eager, trainer.amp=off, channels_last: trainer.compile=auto is eager on cpu "
        "(compiling the DCGAN step on a CPU was measured 0.64x as fast); trainer.memory_format="
        "auto is channels_last on a CPU (a +preset=fast10 step measured 0.89x the CPU of "
        "contiguous in bf16, 0.95x in fp32)"
    ]
    assert trainer.execution["why"] in lines[0]
    assert trainer.execution["memory_format_why"] in lines[0]


# --- the CUDA-graph guards ----------------------------------------------------------------------


def test_inductor_runs_without_layout_optimization_in_every_mode():
    for mode in ("default", "reduce-overhead", "max-autotune"):
        options = execution.compile_options(mode, "inductor")["options"]
        assert options["layout_optimization"] is False
        assert options.get("triton.cudagraphs", False) == (mode in execution.CUDA_GRAPH_MODES)
        assert "default" not in options  # the mode's own options, not the table of all modes
    assert execution.compile_options("default", "aot_eager") == {"backend": "aot_eager"}


def test_logs_of_a_replayed_graph_are_copied_before_the_next_replay_overwrites_them():
    """A stand-in for a CUDA-graph replay: every call writes its outputs into the same
    static buffers. Kept across iterations (as the tracker keeps them until the log interval),
    uncopied logs would all read the last iteration's values."""
    buffer = {"loss/D": torch.zeros(()), "loss/G": torch.zeros(())}

    def replay(penalty_due):
        for i, value in enumerate(buffer.values()):
            value.add_(1.0 + i)
        return [dict(buffer)]

    kept = [replay((False,)) for _ in range(3)]
    assert [logs[0]["loss/D"].item() for logs in kept] == [3.0, 3.0, 3.0]  # the hazard
    for value in buffer.values():
        value.zero_()
    safe = execution.graph_safe(replay)
    kept = [safe((False,)) for _ in range(3)]
    assert [logs[0]["loss/D"].item() for logs in kept] == [1.0, 2.0, 3.0]
    assert [logs[0]["loss/G"].item() for logs in kept] == [2.0, 4.0, 6.0]


def test_a_failure_while_recording_or_first_replaying_is_undone_then_runs_eager(caplog):
    """Compilation fails on the first call, CUDA-graph recording on the second, the first
    replay on the third: each is caught, the state restored and the rest runs eager; after
    ``GUARDED_CALLS`` calls a failure is the run's own error."""
    for failing_call in range(1, execution.GUARDED_CALLS + 1):
        calls, restored, ran = [0], [], []

        def fast(penalty_due, failing_call=failing_call, calls=calls, ran=ran):
            calls[0] += 1
            if calls[0] == failing_call:
                raise RuntimeError(f"boom on call {failing_call}")
            ran.append("fast")
            return [{"loss/D": torch.ones(())}]

        def eager(penalty_due, ran=ran):
            ran.append("eager")
            return [{"loss/D": torch.ones(())}]

        def restore(saved, reason, restored=restored):
            restored.append((saved, reason))

        run = execution.guarded(fast, eager, "default", lambda: "state", restore)
        with caplog.at_level(logging.WARNING, logger="ganlab.execution"):
            for _ in range(5):
                run((False,))
        assert ran == ["fast"] * (failing_call - 1) + ["eager"] * (6 - failing_call)
        assert restored == [("state", f"boom on call {failing_call}")]

    def late(penalty_due, calls=[0]):  # noqa: B006 - the stand-in's own call count
        calls[0] += 1
        if calls[0] > execution.GUARDED_CALLS:
            raise RuntimeError("a failure after the guarded calls")
        return [{}]

    run = execution.guarded(late, late, "default", lambda: None, lambda *a: None)
    for _ in range(execution.GUARDED_CALLS):
        run((False,))
    with pytest.raises(RuntimeError, match="after the guarded calls"):
        run((False,))
