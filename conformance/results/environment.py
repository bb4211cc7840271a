"""Where a run happened: the ``environment`` line of a results file (Python, OS, CPU, host,
command, start time, the run's settings) and its ``environment_id``."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def environment(settings: dict[str, Any] | None = None,
                case_digests: dict[str, str] | None = None) -> dict[str, Any]:
    """Where this process runs: Python, OS, CPU, host, the command line and the time; with
    ``settings`` (the run's, flat: ``conformance.run.runner.run_settings``) and ``case_digests``
    (case id -> sha256) when given, which a later ``--resume`` or ``--append`` checks.
    ``environment_id`` hashes the machine and Python only, so a resumed run finds it."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "host": platform.node(),
        "command": " ".join([_program_name(), *sys.argv[1:]]),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    stable = {k: info[k] for k in ("python", "os", "machine", "cpu", "host")}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()
    info["environment_id"] = digest[:12]
    if settings is not None:
        info["settings"] = settings
    if case_digests is not None:
        info["case_digests"] = case_digests
    return info


def _program_name() -> str:
    """``conformance`` also when run as ``python -m conformance`` (argv[0] is __main__.py)."""
    name = Path(sys.argv[0]).name
    return "conformance" if name in ("__main__.py", "conformance") else name


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
