"""The state machine runs a small plan in an Inline Map and a large one in a Distributed Map, the same way."""

from __future__ import annotations

import json
from typing import Any

from diskport.pipeline.chunk_plan import INLINE_MAP_MAX_CHUNKS

from diskport_emulator.template import PROJECT_ROOT

ASL_PATH = PROJECT_ROOT / "statemachine" / "import_data_image.asl.json"


def definition() -> dict[str, Any]:
    return dict(json.loads(ASL_PATH.read_text()))


def branches(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    fetch_branch, beside_branch = state["Branches"]
    return fetch_branch["States"], beside_branch["States"]


def test_fetch_and_the_workers_beside_it_lead_to_a_choice_of_map_by_what_is_left_of_the_plan() -> None:
    states = definition()["States"]
    assert states["MarkRunning"]["Next"] == "Prepare"
    prepare = states["Prepare"]
    assert prepare["Type"] == "Parallel"
    fetch_states, _ = branches(prepare)
    assert fetch_states["Fetch"]["End"] is True
    # Fetch's answer (its branch's output) is what goes on
    assert fetch_states["Fetch"]["ResultPath"] == "$.fetch"
    assert prepare["OutputPath"] == "$[0]"
    assert prepare["Next"] == "ChooseConvertMap"
    choice = states["ChooseConvertMap"]
    took_all, small = choice["Choices"]
    # A plan the workers beside Fetch took whole needs no Map
    assert took_all == {"Variable": "$.fetch.chunks_left", "NumericEquals": 0, "Next": "Register"}
    # The same bound the planner uses to hand the plan over in Fetch's output
    assert small == {
        "Variable": "$.fetch.chunk_count",
        "NumericLessThanEquals": INLINE_MAP_MAX_CHUNKS,
        "Next": "Convert",
    }
    assert choice["Default"] == "ConvertDistributed"


def test_the_workers_beside_fetch_are_one_per_slot_and_retry_as_the_maps_chunks_do() -> None:
    states = definition()["States"]
    _, beside_states = branches(states["Prepare"])
    slots = beside_states["ListWorkersBesideFetch"]["Parameters"]["slots.$"]
    assert slots == "States.ArrayRange(1, States.StringToJson('${WorkersBesideFetch}'), 1)"
    beside = beside_states["ConvertBesideFetch"]
    assert beside["ItemsPath"] == "$.slots"
    assert beside["ItemSelector"] == {"job_id.$": "$.job_id", "slot.$": "$$.Map.Item.Value"}
    (task,) = beside["ItemProcessor"]["States"].values()
    assert task["Parameters"]["FunctionName"] == "${ConvertChunkFunctionArn}"
    # The same retries as a Map's chunk, and a fresh invocation for one that ran out of time waiting for the plan
    (chunk_task,) = states["Convert"]["ItemProcessor"]["States"].values()
    waiting, *rest = task["Retry"]
    assert waiting["ErrorEquals"] == ["PlanNotReadyError"]
    assert rest == chunk_task["Retry"]


def test_the_inline_map_takes_its_chunks_from_fetchs_output_within_step_functions_limit() -> None:
    states = definition()["States"]
    inline = states["Convert"]
    assert inline["ItemProcessor"]["ProcessorConfig"]["Mode"] == "INLINE"
    assert inline["ItemsPath"] == "$.fetch.chunks"
    fetch_states, _ = branches(states["Prepare"])
    assert fetch_states["Fetch"]["ResultSelector"]["chunks.$"] == "$.Payload.chunks"
    # Step Functions runs at most 40 iterations of an Inline Map at once
    assert INLINE_MAP_MAX_CHUNKS <= 40
    distributed = states["ConvertDistributed"]
    assert distributed["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert distributed["ItemReader"]["Parameters"]["Key.$"] == "$.fetch.plan_key"


def test_both_maps_convert_a_chunk_with_the_same_task_retries_and_ending() -> None:
    states = definition()["States"]
    inline, distributed = states["Convert"], states["ConvertDistributed"]
    # (state names are unique across a state machine, the maps' included)
    (inline_task,) = inline["ItemProcessor"]["States"].values()
    (distributed_task,) = distributed["ItemProcessor"]["States"].values()
    assert inline_task == distributed_task
    assert inline_task["Parameters"]["FunctionName"] == "${ConvertChunkFunctionArn}"
    for key in ("ItemSelector", "MaxConcurrencyPath", "ResultPath", "Catch", "Next"):
        assert inline[key] == distributed[key], key
