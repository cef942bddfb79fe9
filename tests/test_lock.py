"""The folder lock (ganlab.claim): an OS lock held for the run's life, so a live process keeps
its folder even when ``.ganlab.lock`` is deleted, and a process that died never blocks."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ganlab.claim import LOCK_FILE, claim_folder
from ganlab.errors import Refused

HOLD = (
    "import sys, time; from pathlib import Path; from ganlab.claim import claim_folder\n"
    "with claim_folder(Path(sys.argv[1]), None, False):\n"
    "    print('held', flush=True); time.sleep(120)\n"
)


@pytest.fixture
def holder(tmp_path) -> Iterator[subprocess.Popen]:
    """Another process that has claimed ``tmp_path`` and is still running."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_deleting_the_lock_file_does_not_let_a_second_writer_in(tmp_path, holder):
    (tmp_path / LOCK_FILE).unlink()
    with pytest.raises(Refused, match=f"another ganlab process is training in {tmp_path}"):
        with claim_folder(tmp_path, "auto", False):
            pass
    assert not (tmp_path / "checkpoints").exists()


def test_a_lock_left_by_a_killed_process_never_blocks(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / LOCK_FILE).exists()  # the stale file is still there
    with claim_folder(tmp_path, "auto", False):
        entered = True
    assert entered


def test_one_process_releases_its_claim_for_the_next(tmp_path):
    with claim_folder(tmp_path, None, False):
        pass
    with claim_folder(Path(tmp_path), "auto", False):  # the same folder, claimed again
        pass
