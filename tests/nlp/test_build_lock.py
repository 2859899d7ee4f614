"""Two processes that need the model at once build it once: the second waits for the first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import REPO

NEED_MODEL = ("import logging, sys\n"
              "logging.basicConfig(level=logging.INFO)\n"
              "from pathlib import Path\n"
              "from nlp.build import ensure_model, read_meta\n"
              "ensure_model(Path(sys.argv[1]))\n"
              "assert read_meta(Path(sys.argv[1])) is not None\n")


def test_two_processes_build_the_model_once(tmp_path: Path) -> None:
    target = tmp_path / "model"
    procs = [subprocess.Popen([sys.executable, "-c", NEED_MODEL, str(target)], cwd=REPO,  # noqa: S603
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    logs = [proc.communicate(timeout=300)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], logs
    assert sum(log.count("building the topic model") for log in logs) == 1
