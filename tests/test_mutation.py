"""CI's mutation run: every mutant of the pure core/ modules is killed or recorded as equivalent.

``./dev mutate`` runs the same check by hand, and more scopes (docs/testing.md). A new survivor
here means a rule in core/ changed or lost its test: kill it with a test that asserts behaviour,
or add it to tests/mutation/equivalent.txt with why it makes no difference.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_no_unexplained_survivors_in_core(tmp_path: Path) -> None:
    # Bounded by its size (about 1,550 mutants, each against the tests that reach it): a few
    # minutes on two idle cores. The --minutes bound only stops a run gone wrong.
    proc = subprocess.run([sys.executable, "-m", "tests.mutation", "core", "--workdir", str(tmp_path),
                           "--jobs", "2", "--minutes", "25"], cwd=ROOT, capture_output=True, text=True)
    assert "stopped by the time bound" not in proc.stdout, proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "tinyota_mqtt.core.attempts" in proc.stdout  # it judged something
