"""The README's map of the code names, for each state, route and disk format, a file that exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = "layers/diskport/diskport/"
README = (ROOT / "README.md").read_text()


def _headed_tables() -> dict[str, list[list[str]]]:
    tables: dict[str, list[list[str]]] = {}
    lines = README.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].startswith("|") and index + 1 < len(lines) and set(lines[index + 1]) <= set("|- :"):
            header = lines[index].strip("|").split("|")[0].strip()
            rows = []
            index += 2
            while index < len(lines) and lines[index].startswith("|"):
                rows.append([cell.strip() for cell in lines[index].strip("|").split("|")])
                index += 1
            tables[header] = rows
        else:
            index += 1
    return tables


TABLES = _headed_tables()


def _files_named(cell: str) -> list[str]:
    return re.findall(r"`([\w/.-]+\.(?:py|json))`", cell)


def _path(name: str) -> Path:
    return ROOT / (name if name.startswith(("functions/", "statemachine/")) else PACKAGE + name)


def test_every_file_the_map_names_exists() -> None:
    for header in ("state of the state machine", "route", "disk format"):
        for row in TABLES[header]:
            for name in _files_named(" ".join(row)):
                assert _path(name).is_file(), f"README names {name} ({header} table), which does not exist"
    for row in TABLES["package"]:
        package = row[0].strip("`")
        assert (ROOT / PACKAGE / package).is_dir(), f"README names package {package}, which does not exist"
        for name in _files_named(row[1]):
            assert (ROOT / PACKAGE / package / name).is_file(), f"README names {package}{name}, which does not exist"


def test_every_state_of_the_state_machine_is_mapped() -> None:
    definition = json.loads((ROOT / "statemachine" / "import_data_image.asl.json").read_text())
    states: set[str] = set()

    def collect(machine: dict[str, dict[str, object]]) -> None:
        for name, state in machine.items():
            states.add(name)
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if isinstance(processor, dict):
                collect(processor["States"])
            for branch in state.get("Branches", []) or []:  # type: ignore[attr-defined]
                collect(branch["States"])

    collect(definition["States"])
    mapped = " ".join(row[0] for row in TABLES["state of the state machine"])
    assert {state for state in states if not re.search(rf"\b{state}\b", mapped)} == set()


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def test_every_route_of_the_template_is_mapped_to_its_function() -> None:
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)  # safe loader, tags dropped
    rows = TABLES["route"]
    for resource in template["Resources"].values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        code = resource["Properties"]["CodeUri"].rstrip("/") + "/app.py"
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] not in ("HttpApi", "Api"):
                continue
            route = f"{event['Properties']['Method'].upper()} {event['Properties']['Path']}"
            (row,) = [row for row in rows if f"`{route}`" in row[0]] or [None]
            assert row is not None, f"{route} is not in the README's route table"
            assert f"`{code}`" in row[1], f"{route} is served by {code}, not what the README says: {row[1]}"


def test_every_format_the_engine_reads_is_mapped() -> None:
    formats = {path.stem for path in (ROOT / PACKAGE / "engine" / "formats").glob("*.py")} - {"__init__"}
    named = {Path(name).stem for row in TABLES["disk format"] for name in _files_named(row[1])}
    assert formats <= named
