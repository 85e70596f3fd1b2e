"""Regenerate docs/RESULTS.md: every reproduction and benchmark, one after the other.

    python benchmarks/run_all.py            # the whole page (under an hour on the 2-core machine)
    python benchmarks/run_all.py --quick    # every script on tiny settings (a few minutes), written
                                            # to a scratch page: docs/ is left as it was
    python benchmarks/run_all.py --only perf_keras reproduce_he   # some sections

Each script writes its own section (see benchmarks/_results.py); this one adds the page's first
section: the machine, the date, the load, how long each script took, and every target with its
measured value and PASS/FAIL. Scripts run one at a time (timings must not share the CPU), each in
its own process. A script whose requirement is missing (transformers, Chromium) is skipped and
the page says so; a script that fails is reported and the others still run; the exit status is
1 if any failed (and, with --quick, if anything under docs/ changed).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"


@dataclass
class Script:
    name: str
    full: list[str] = field(default_factory=list)  # arguments of the real run ({scratch}: a temporary folder)
    quick: list[str] = field(default_factory=lambda: ["--quick"])
    modules: tuple[str, ...] = ()  # Python packages it cannot run without
    programs: tuple[str, ...] = ()  # executables it cannot run without
    quick_programs: tuple[str, ...] = ()
    file: str = ""  # the script's file, where it is not ``{name}.py`` (one script, two sections)

    @property
    def path(self) -> Path:
        return HERE / f"{self.file or self.name}.py"


SCRIPTS = [
    # reproductions of published results
    Script("reproduce_mnist1d", modules=("mnist1d",)),
    Script("reproduce_glorot", modules=("mnist1d", "matplotlib")),
    Script("reproduce_he", modules=("mnist1d",)),
    Script("reproduce_selu", modules=("mnist1d", "pandas", "scipy")),
    Script("reproduce_elu", modules=("mnist1d", "matplotlib")),
    Script("compare_textbook", full=["--keep", "{scratch}/textbook"], modules=("mnist1d", "pandas", "scipy", "matplotlib"),
           programs=("chromium",), quick_programs=("chromium",)),  # fmt: skip
    Script("reproduce_textbook", full=["--results", "{scratch}/textbook"], modules=("mnist1d", "pandas", "scipy")),
    # performance against what users would pick instead
    Script("perf_fit_loop"),
    Script("perf_keras"),
    Script("perf_compile"),
    Script("perf_peak"),
    Script("fit_compile"),
    Script("repair_suite", full=[], modules=("mnist1d", "sklearn", "transformers")),
    Script("repair_held_out", full=["--held-out"], quick=["--quick", "--held-out"], modules=("mnist1d", "sklearn"),
           file="repair_suite"),  # fmt: skip
    Script("find_lr_sweep", modules=("mnist1d", "sklearn")),
    # the earlier benchmarks
    Script("doctor_latency", quick=["--repeats", "1"], modules=("transformers",)),
    Script("monitor_overhead", quick=["--slices", "1"]),
    Script("monitor_training", quick=["--quick", "--slices", "1"], modules=("transformers", "sklearn")),
    Script("fold_batchnorm"),
    Script("theory_finite_depth", quick=["--seeds", "1"]),
    Script("theory_phase", modules=("mnist1d", "matplotlib")),
    Script("demo_first_minute", modules=("sklearn", "matplotlib"), programs=("git",)),
]


def missing(script: Script, quick: bool) -> list[str]:
    lacking = [f"Python package {m}" for m in script.modules if importlib.util.find_spec(m) is None]
    programs = script.quick_programs if quick else script.programs
    return lacking + [f"program {p}" for p in programs if shutil.which(p) is None]


def kept_rows(results: Path, rerun: set[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The summary's rows of the scripts that this call does not rerun (``--only``), as the page has them."""
    text = results.read_text() if results.is_file() else ""
    section = re.search(r"<!-- run_all:start -->(.*?)<!-- run_all:end -->", text, re.S)
    checks: dict[str, list[str]] = {}
    scripts: dict[str, str] = {}
    for line in (section.group(1) if section else "").splitlines():
        if (m := re.match(r"\| `(\w+)\.py` \|", line)) and m.group(1) not in rerun:
            scripts[m.group(1)] = line
        elif (m := re.match(r"\| `(\w+)` \|", line)) and m.group(1) not in rerun:
            checks.setdefault(m.group(1), []).append(line)
    return checks, scripts


def fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings, written to a scratch page")
    parser.add_argument("--only", nargs="+", metavar="SCRIPT", help="run these scripts only")
    parser.add_argument("--results", help="the page to write (default docs/RESULTS.md; --quick: a scratch file)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads in every script (OMP_NUM_THREADS; default 1: the machine is shared)")
    args = parser.parse_args()
    names = [s.name for s in SCRIPTS]
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        parser.error(f"unknown script(s) {', '.join(unknown)}; scripts: {', '.join(names)}")
    chosen = [s for s in SCRIPTS if not args.only or s.name in args.only]

    scratch = Path(tempfile.mkdtemp(prefix="run-all-"))
    results = Path(args.results).resolve() if args.results else (scratch / "RESULTS.md" if args.quick else DOCS / "RESULTS.md")
    env = {**os.environ, "TRAINABILITY_RESULTS": str(results), "TRAINABILITY_CHECKS": str(scratch / "checks"),
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(args.threads)}  # fmt: skip
    before = fingerprint(DOCS) if args.quick else {}
    sys.path.insert(0, str(HERE))
    os.environ["TRAINABILITY_RESULTS"] = str(results)  # for _results, imported below
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from _checks import cell
    from _results import machine, write_section

    load_start, start = os.getloadavg(), time.perf_counter()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows, failed = [], []
    for script in chosen:
        lacking = missing(script, args.quick)
        if lacking:
            print(f"-- {script.name}: skipped ({', '.join(lacking)} not found)", flush=True)
            rows.append((script.name, None, f"skipped: {', '.join(lacking)} not installed", os.getloadavg()[0]))
            continue
        argv = [a.replace("{scratch}", str(scratch)) for a in (script.quick if args.quick else script.full)]
        if script.name.startswith(("reproduce_", "perf_")):
            argv.append(f"--threads={args.threads}")
        print(f"-- {script.name} {' '.join(argv)}  (load {os.getloadavg()[0]:.1f})", flush=True)
        t0, load = time.perf_counter(), os.getloadavg()[0]
        log = scratch / f"{script.name}.log"
        with open(log, "w") as out:
            done = subprocess.run([sys.executable, str(script.path), *argv], cwd=HERE.parent, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=30 * 60)  # fmt: skip
        seconds = time.perf_counter() - t0
        text = log.read_text()
        if done.returncode:
            failed.append(script.name)
            tail = text.strip().splitlines()[-1] if text.strip() else "no output"
            print(f"   FAILED in {seconds:.0f} s (exit {done.returncode}): {tail}\n   log: {log}", flush=True)
            rows.append((script.name, seconds, f"failed (exit {done.returncode}): {tail[:200]}", load))
        else:
            verdicts = [line[:4] for line in text.splitlines() if line[:4] in ("PASS", "FAIL")]
            print(f"   done in {seconds:.0f} s" + (f": {verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL" if verdicts else ""), flush=True)
            rows.append((script.name, seconds, "ok", load))
    total = time.perf_counter() - start

    ran = {script.name for script in chosen}
    kept_checks, kept_scripts = kept_rows(results, ran) if args.only else ({}, {})
    new_checks: dict[str, list[str]] = {}
    for script in chosen:
        path = scratch / "checks" / f"{script.name}.json"
        if path.is_file():
            new_checks[script.name] = [
                f"| `{script.name}` | {cell(c['claim'])} | {cell(c['target'])} | {cell(c['measured'])} | "
                f"**{'-' if c['passed'] is None else ('PASS' if c['passed'] else 'FAIL')}** |"
                for c in json.loads(path.read_text())
            ]
    new_scripts = {n: f"| `{n}.py` | {'-' if s is None else f'{s:.0f}'} | {load:.1f} | {status} |" for n, s, status, load in rows}
    check_lines = [line for n in names for line in (new_checks.get(n) or kept_checks.get(n, []))]
    check_rows = "\n".join(check_lines)
    script_rows = "\n".join(new_scripts.get(n) or kept_scripts[n] for n in names if n in new_scripts or n in kept_scripts)
    passed = sum("**PASS**" in line for line in check_lines)
    missed = sum("**FAIL**" in line for line in check_lines)
    timing = f"in {total / 60:.1f} min"
    if args.only:
        timing = (f"(this call reran {', '.join(sorted(ran))} in {total / 60:.1f} min; the other rows are kept from the "
                  "page's previous run)")  # fmt: skip
    body = f"""## Summary (`benchmarks/run_all.py`{" --quick: a smoke run, the figures mean nothing" if args.quick else ""})

Generated {date} by `python benchmarks/run_all.py`{" --quick" if args.quick else ""} {timing} on
{machine()}. The machine is shared with other engineers' work: 1-minute load average
{load_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; every section states its own. Each
reproduction and ratio below is measured by the script named, whether or not it meets its target;
a missed target keeps its real number, with the reason in its section.

| section | claim | target | measured | verdict |
|---|---|---|---|---|
{check_rows}

{passed} targets met, {missed} missed. The earlier benchmarks (doctor latency, monitor overhead, BN
folding, theory, the first minute) state their targets in their own sections.

| script | seconds | load at start | status |
|---|---|---|---|
{script_rows}
"""
    write_section("run_all", body, first=True)
    print(f"\n{passed} PASS, {missed} FAIL; {len(failed)} script(s) failed; {total / 60:.1f} min; page: {results}")
    changed = sorted(k for k, v in fingerprint(DOCS).items() if before.get(k) != v) if args.quick else []
    if changed:
        print(f"--quick changed files under docs/: {', '.join(changed)}", file=sys.stderr)
    if args.quick and not args.results and not failed:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(1 if failed or changed else 0)


if __name__ == "__main__":
    main()
