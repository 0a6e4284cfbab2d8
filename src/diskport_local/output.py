"""What commands print for people: a table on a terminal, JSON with `--json` or when the output is piped."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

# (heading, how to get the cell from a record)
Column = tuple[str, Callable[[dict[str, Any]], Any]]


def wants_json(asked: bool, stream: TextIO | None = None) -> bool:
    """JSON when asked for, or when nobody reads the output on a terminal (a pipe, a file, a script)."""
    return asked or not (stream if stream is not None else sys.stdout).isatty()


def print_json(value: Any, stream: TextIO | None = None) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False), file=stream if stream is not None else sys.stdout)


def table(records: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """Records as aligned columns under their headings; missing values as '-'."""
    rows = [[heading for heading, _ in columns]]
    rows += [[_cell(cell_of(record)) for _, cell_of in columns] for record in records]
    widths = [max(len(row[index]) for row in rows) for index in range(len(columns))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def fields(record: dict[str, Any], names: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]]) -> str:
    """One record as `label: value` lines, the labels aligned; values that are absent are left out."""
    present = [(label, _cell(value_of(record))) for label, value_of in names if value_of(record) not in (None, "")]
    width = max((len(label) for label, _ in present), default=0)
    return "\n".join(f"{label + ':':<{width + 1}} {value}" for label, value in present)


def show(value: Any, *, as_json: bool, render: Callable[[Any], str], stream: TextIO | None = None) -> None:
    stream = stream if stream is not None else sys.stdout
    if as_json:
        print_json(value, stream)
    else:
        print(render(value), file=stream)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "-"
    return str(value)


def gib(size: Any) -> str | None:
    """Bytes as GiB with one decimal, for a person's table."""
    try:
        return f"{int(size) / 1024**3:.1f} GiB"
    except (TypeError, ValueError):
        return None


IMAGE_COLUMNS: tuple[Column, ...] = (
    ("ID", lambda image: image.get("id")),
    ("NAME", lambda image: image.get("name")),
    ("STATUS", lambda image: image.get("status")),
    ("FORMAT", lambda image: image.get("diskport_source_format") or image.get("disk_format")),
    ("DISK", lambda image: gib(image.get("diskport_virtual_size_bytes"))),
    ("MIN_DISK", lambda image: f"{image['min_disk']} GB" if image.get("min_disk") is not None else None),
    ("CREATED", lambda image: image.get("created_at")),
)


def percent_of(process_percent: Any) -> float:
    """IMS's process_percent, a fraction 0..1 (ims-api.md §3), as a percentage."""
    return 100 * min(1.0, max(0.0, float(process_percent or 0)))


def job_task(job: dict[str, Any]) -> str:
    return str((job.get("entities") or {}).get("current_task") or "")


JOB_COLUMNS: tuple[Column, ...] = (
    ("JOB_ID", lambda job: job.get("job_id")),
    ("STATUS", lambda job: job.get("status")),
    ("TASK", job_task),
    ("PROGRESS", lambda job: f"{percent_of((job.get('entities') or {}).get('process_percent')):.1f}%"),
    ("IMAGE", lambda job: (job.get("entities") or {}).get("image_name")),
    ("BEGAN", lambda job: job.get("begin_time")),
    ("ERROR", lambda job: job.get("error_code")),
)

JOB_FIELDS: tuple[Column, ...] = (
    ("job", lambda job: job.get("job_id")),
    ("status", lambda job: job.get("status")),
    ("task", job_task),
    ("progress", lambda job: f"{percent_of((job.get('entities') or {}).get('process_percent')):.1f}%"),
    ("image", lambda job: (job.get("entities") or {}).get("image_id")),
    ("image name", lambda job: (job.get("entities") or {}).get("image_name")),
    ("began", lambda job: job.get("begin_time")),
    ("ended", lambda job: job.get("end_time")),
    ("error", lambda job: job.get("error_code")),
    ("reason", lambda job: job.get("fail_reason")),
)
