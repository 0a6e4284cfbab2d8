"""The OpenAPI document describes the template's routes with the real request, response and error models."""

from __future__ import annotations

from typing import Any

from diskport_local.openapi import openapi_document


def test_every_route_of_the_template_is_in_the_document(stack: Any) -> None:
    document = openapi_document(stack.local, stack.lambdas.module)
    declared = {(route.path, route.method.lower()) for route in stack.local.api_routes()}
    documented = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert documented == declared


def test_create_takes_the_ims_request_model_and_answers_a_job_id(stack: Any) -> None:
    document = openapi_document(stack.local, stack.lambdas.module)
    operation = document["paths"]["/v1/cloudimages/dataimages/action"]["post"]
    request_schema = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rpartition("/")[2]
    model = document["components"]["schemas"][request_schema]
    assert set(model["required"]) == {"name", "image_url", "min_disk"}
    assert {"description", "os_type", "cmk_id", "tags", "image_tags"} <= set(model["properties"])
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rpartition("/")[2]
    assert document["components"]["schemas"][answer]["required"] == ["job_id"]


def test_the_job_routes_answer_the_ims_job_schemas(stack: Any) -> None:
    document = openapi_document(stack.local, stack.lambdas.module)
    schemas = document["components"]["schemas"]
    show_job = document["paths"]["/v1/{project_id}/jobs/{job_id}"]["get"]["responses"]["200"]
    job_schema = schemas[show_job["content"]["application/json"]["schema"]["$ref"].rpartition("/")[2]]
    assert {"job_id", "job_type", "begin_time", "end_time", "status", "error_code", "fail_reason", "entities"} <= set(
        job_schema["properties"]
    )
    assert job_schema["properties"]["status"]["enum"] == ["INIT", "RUNNING", "SUCCESS", "FAIL"]


def test_errors_are_documented_as_the_ims_error_body_not_as_validation_detail(stack: Any) -> None:
    document = openapi_document(stack.local, stack.lambdas.module)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["ErrorBody"]["required"] == ["error"]
    assert set(schemas["ErrorDetail"]["required"]) == {"code", "message"}
    for operations in document["paths"].values():
        for operation in operations.values():
            assert "422" not in operation["responses"]
            for status in ("400", "404", "500"):
                error = operation["responses"][status]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorBody"}


def test_every_reference_resolves(stack: Any) -> None:
    document = openapi_document(stack.local, stack.lambdas.module)

    def references(value: Any) -> list[str]:
        if isinstance(value, dict):
            found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
            return found + [ref for inner in value.values() for ref in references(inner)]
        if isinstance(value, list):
            return [ref for inner in value for ref in references(inner)]
        return []

    names = {ref.rpartition("/")[2] for ref in references(document)}
    assert names <= set(document["components"]["schemas"])


def test_the_merged_document_is_valid_openapi_3_1_signed_with_sigv4(stack: Any) -> None:
    from openapi_spec_validator import validate

    document = openapi_document(stack.local, stack.lambdas.module)
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"].startswith("diskport")
    assert document["security"] == [{"sigv4": []}]
    assert document["components"]["securitySchemes"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
