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

from conformance.results.records import RESULTS_SCHEMA_VERSION


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
        "cpu_flags": cpu_flags(),
        "host": platform.node(),
        "command": " ".join([_program_name(), *sys.argv[1:]]),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    stable = {k: info[k] for k in ("python", "os", "machine", "cpu", "host")}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()
    info["environment_id"] = digest[:12]
    info["schema_version"] = RESULTS_SCHEMA_VERSION
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


# The instruction-set extensions that change which kernels a framework's CPU code runs (its
# BLAS, oneDNN and XLA pick kernels by them), as /proc/cpuinfo names them.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
             "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_tile",
             "amx_fp16", "asimd", "sve", "sve2", "bf16", "fphp", "asimdhp")


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The ``ISA_FLAGS`` the first CPU of ``/proc/cpuinfo`` lists (``flags`` on x86,
    ``Features`` on Arm), in that order; empty where the OS does not tell (not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            present = set(value.split())
            return [flag for flag in ISA_FLAGS if flag in present]
    return []
