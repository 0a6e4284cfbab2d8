"""diskport's additions to IMS's API are in the OpenAPI document, each saying it is diskport's own."""

from __future__ import annotations

from typing import Any

from diskport_local.openapi import openapi_document


def test_the_job_listing_is_documented_as_a_diskport_extension(stack: Any) -> None:
    operation = openapi_document(stack.local, stack.lambdas.module)["paths"]["/v1/cloudimages/jobs"]["get"]
    assert "diskport extension, not part of IMS" in operation["summary"]
    assert {parameter["name"] for parameter in operation["parameters"]} == {"limit", "marker"}


def test_the_ova_disk_field_is_documented_as_a_diskport_extension(stack: Any) -> None:
    schemas = openapi_document(stack.local, stack.lambdas.module)["components"]["schemas"]
    field = schemas["CreateDataImageRequest"]["properties"]["ova_disk"]
    assert "diskport extension, not in IMS" in field["description"]
