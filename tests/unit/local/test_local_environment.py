"""Local mode runs every function in one process, with the environment the template gives them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from diskport.settings import Settings

from diskport_emulator.template import ConflictingEnvironmentError, LocalStack, function_environment_union
from diskport_local.server import (
    DEFAULT_PROJECT_ID,
    LocalMode,
    LocalModeOptions,
    convert_writers_setting,
    local_environment,
)


def test_the_process_gets_every_functions_variables_pointed_at_the_emulator() -> None:
    stack = LocalStack()
    environment = local_environment(stack, "feed" * 8, "http://127.0.0.1:5999")
    for logical_id in stack.resources_of_type("AWS::Serverless::Function"):
        for name in stack.function_environment(logical_id):
            assert name in environment, f"{logical_id} needs {name}"
    assert environment["JOBS_TABLE"] == stack.physical_name("JobsTable")
    assert environment["STATE_MACHINE_ARN"] == stack.arn("ImportDataImageStateMachine")
    assert environment["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5999"
    assert environment["MOTO_PORT"] == "5999"
    assert environment["PROJECT_ID_SOURCE"] == "local"
    assert environment["LOCAL_PROJECT_ID"] == environment["UPLOAD_PROJECT_ID"] == "feed" * 8


def test_two_functions_wanting_different_values_of_one_variable_stop_local_mode(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        """
Resources:
  OneFunction:
    Type: AWS::Serverless::Function
    Properties: {Environment: {Variables: {CHUNK_BYTES: "1"}}}
  OtherFunction:
    Type: AWS::Serverless::Function
    Properties: {Environment: {Variables: {CHUNK_BYTES: "2"}}}
"""
    )
    with pytest.raises(ConflictingEnvironmentError, match="OneFunction and OtherFunction set CHUNK_BYTES"):
        function_environment_union(LocalStack(template_path=template))


def test_ports_and_project_come_from_the_environment_with_defaults() -> None:
    assert LocalModeOptions.from_environment({}) == LocalModeOptions(3000, 5000, DEFAULT_PROJECT_ID)
    options = LocalModeOptions.from_environment(
        {"LOCAL_API_PORT": "3300", "LOCAL_AWS_PORT": "5500", "LOCAL_PROJECT_ID": "abc"}
    )
    assert (options.api_port, options.aws_port, options.project_id) == (3300, 5500, "abc")


def test_a_port_in_use_is_named_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"Port {port} for the AWS emulator is in use"):
            LocalMode(LocalModeOptions(api_port=0, aws_port=port)).start()


def test_the_banner_names_the_watched_uploads_from_the_template_and_how_the_cli_finds_other_ports() -> None:
    local_mode = LocalMode(LocalModeOptions())
    local_mode.api_url, local_mode.aws_url = "http://127.0.0.1:3201", "http://127.0.0.1:5201"
    banner = local_mode.banner()
    assert "uploads ending .qcow2 .vmdk .vhd .vhdx .vdi .raw .img start imports" in banner
    assert "LOCAL_API_PORT=3201 LOCAL_AWS_PORT=5201 .venv/bin/diskport import" in banner
    local_mode.api_url, local_mode.aws_url = "http://127.0.0.1:3000", "http://127.0.0.1:5000"
    assert "  .venv/bin/diskport import /tmp/disk.qcow2" in local_mode.banner()


def test_convert_workers_keep_fewer_requests_in_flight_against_the_emulated_ebs_unless_told_otherwise() -> None:
    deployed = Settings.model_validate({}).writers_per_chunk
    assert int(convert_writers_setting({})["WRITERS_PER_CHUNK"]) < deployed
    assert convert_writers_setting({"WRITERS_PER_CHUNK": "16"}) == {}  # the caller's own value reaches the functions
    assert convert_writers_setting({"DISKPORT_EBS_PUT_LATENCY_MS": "200"}) == {}  # a remote EBS's latency: as deployed
    assert int(convert_writers_setting({"DISKPORT_EBS_PUT_LATENCY_MS": "0"})["WRITERS_PER_CHUNK"]) < deployed
