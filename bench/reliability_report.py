"""Print the figures the reliability suites measured as Markdown tables (the ones in docs/reliability.md).

    DISKPORT_REPORT_DIR=.reliability .venv/bin/pytest tests/reliability --run-slow -p no:randomly
    .venv/bin/python bench/reliability_report.py .reliability

The suites write one JSON line per case into DISKPORT_REPORT_DIR; this reads them all (one file per test
process) and prints a table per suite: faults, hostile inputs, load.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def rows_in(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(folder.glob("rows-*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return rows


def table(headers: list[str], lines: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None else str(value).replace("|", "\\|")

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(value) for value in line) + " |" for line in lines]
    return "\n".join(out)


def faults_table(rows: list[dict[str, Any]]) -> str:
    return table(
        ["case", "fault injected", "times", "SDK retries", "state machine retries", "job", "snapshot bytes", "s"],
        [
            [
                row["case"],
                row["fault"],
                row["injected"],
                row["sdk_retries"],
                row["step_retries"],
                f"{row['status']} {row['error_code'] or ''}".strip(),
                {True: "exact", None: "none left"}.get(row["bytes_exact"], "WRONG"),
                row["seconds"],
            ]
            for row in sorted(rows, key=lambda row: row["case"])
        ],
    )


def hostile_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        [
            row["file"],
            row["size"],
            row["error_code"],
            row["refused_in"],
            row["seconds"],
            row["peak_mib"],
            row["files_opened"],
            row["reason"][:110] + ("…" if len(row["reason"]) > 110 else ""),
        ]
        for row in rows
    ]
    summary = (
        f"\n\n{len(rows)} files, all FAIL; slowest {max(row['seconds'] for row in rows)} s, "
        f"largest traced peak {max(row['peak_mib'] for row in rows)} MiB."
        if rows
        else ""
    )
    headers = ["file", "bytes", "code", "refused in", "s", "peak MiB", "files opened", "fail_reason (start)"]
    return table(headers, lines) + summary


def load_table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        creates, imports = row["creates"], row["imports"]
        burst, census = creates["census"], imports["census"]
        lines.append(
            [
                row["variant"],
                f"{burst['requests']} creates / {imports['images']} imports",
                f"{creates['requests_per_second']}/s",
                f"{creates['p50_ms']} / {creates['p95_ms']} / {creates['p99_ms']}",
                f"{burst['accepted']} accepted, {sum(burst['refused'].values())} refused {list(burst['refused'])}",
                f"{burst['distinct_jobs']} jobs, {burst['not_ended']} not ended, {burst['ended']}",
                f"{census['ended']} in {imports['wall_seconds']} s",
                f"{imports['jobs_with_one_image']} with one image, {imports['jobs_with_several_images']} duplicated, "
                f"{imports['images_without_a_success_job']} orphaned",
                f"{imports['snapshots_exact']}/{imports['images']}",
            ]
        )
    return table(
        [
            "run",
            "load",
            "create throughput",
            "create p50 / p95 / p99 ms",
            "burst answers",
            "burst jobs",
            "imports",
            "images",
            "snapshots exact",
        ],
        lines,
    )


def main(arguments: list[str]) -> int:
    folder = Path(arguments[0] if arguments else ".reliability")
    rows = rows_in(folder)
    by_suite: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_suite.setdefault(row["suite"], []).append(row)
    printers = {"faults": faults_table, "hostile": hostile_table, "load": load_table}
    for suite, printer in printers.items():
        if suite in by_suite:
            print(f"## {suite}\n\n{printer(by_suite[suite])}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
