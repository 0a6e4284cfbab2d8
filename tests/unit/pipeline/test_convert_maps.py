"""The state machine runs a small plan in an Inline Map and a large one in a Distributed Map, the same way."""

from __future__ import annotations

import json
from typing import Any

from diskport.pipeline.chunk_plan import INLINE_MAP_MAX_CHUNKS

from diskport_emulator.template import PROJECT_ROOT

ASL_PATH = PROJECT_ROOT / "statemachine" / "import_data_image.asl.json"


def definition() -> dict[str, Any]:
    return dict(json.loads(ASL_PATH.read_text()))


def test_fetch_leads_to_a_choice_of_map_by_the_plans_chunk_count() -> None:
    states = definition()["States"]
    assert states["Fetch"]["Next"] == "ChooseConvertMap"
    choice = states["ChooseConvertMap"]
    (rule,) = choice["Choices"]
    # The same bound the planner uses to hand the plan over in Fetch's output
    assert rule == {
        "Variable": "$.fetch.chunk_count",
        "NumericLessThanEquals": INLINE_MAP_MAX_CHUNKS,
        "Next": "Convert",
    }
    assert choice["Default"] == "ConvertDistributed"


def test_the_inline_map_takes_its_chunks_from_fetchs_output_within_step_functions_limit() -> None:
    states = definition()["States"]
    inline = states["Convert"]
    assert inline["ItemProcessor"]["ProcessorConfig"]["Mode"] == "INLINE"
    assert inline["ItemsPath"] == "$.fetch.chunks"
    assert states["Fetch"]["ResultSelector"]["chunks.$"] == "$.Payload.chunks"
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
