"""Write one benchmark's section of docs/RESULTS.md, leaving the other sections as they are.

``TRAINABILITY_RESULTS=/tmp/x/RESULTS.md`` sends the sections, and the pictures the scripts draw
into ``DOCS``, to a scratch page instead (``run_all.py --quick`` does this).
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

RESULTS = Path(os.environ.get("TRAINABILITY_RESULTS") or Path(__file__).resolve().parent.parent / "docs" / "RESULTS.md")
DOCS = RESULTS.parent  # where the pictures go, beside the page that links them
HEADER = "# Benchmark results\n\nEach section is written by the script it names; rerun the script to refresh it.\n"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")  # fmt: skip


def write_section(name: str, body: str, *, first: bool = False) -> None:
    """Replace the section ``name``, or add it at the end (``first=True``: right after the header)."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    section = f"<!-- {name}:start -->\n{body.strip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    elif first and text.startswith(HEADER):
        text = f"{HEADER}\n{section}\n{text[len(HEADER):]}"
    else:
        text = f"{text.rstrip()}\n\n{section}\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
