"""Every rule of `POST /v1/cloudimages/dataimages/action` (ims-api.md §1), at its boundaries.

A rejected request answers 400 with the rule's IMG code, and nothing is written: no job item, no execution.
"""

from __future__ import annotations

from typing import Any

import pytest

ROUTE = "/v1/cloudimages/dataimages/action"
VALID = {"name": "fedora-data1", "image_url": "image-test:fedora_data1.qcow2", "min_disk": 40}


def body_with(**changes: Any) -> dict[str, Any]:
    body = {**VALID, **changes}
    return {key: value for key, value in body.items() if value is not _ABSENT}


_ABSENT = object()

REJECTED = [
    # name
    pytest.param(body_with(name=_ABSENT), "IMG.0013", id="name missing"),
    pytest.param(body_with(name=""), "IMG.0013", id="name empty"),
    pytest.param(body_with(name="n" * 129), "IMG.0002", id="name of 129 characters"),
    pytest.param(body_with(name=" data"), "IMG.0003", id="name with a leading space"),
    pytest.param(body_with(name="data "), "IMG.0003", id="name with a trailing space"),
    pytest.param(body_with(name="data/1"), "IMG.0003", id="name with a slash"),
    pytest.param(body_with(name="data<1>"), "IMG.0003", id="name with angle brackets"),
    pytest.param(body_with(name=42), "IMG.0003", id="name not a string"),
    # description
    pytest.param(body_with(description="d" * 1025), "IMG.0004", id="description of 1025 characters"),
    pytest.param(body_with(description="line\nbreak"), "IMG.0054", id="description with a line feed"),
    pytest.param(body_with(description="carriage\rreturn"), "IMG.0054", id="description with a carriage return"),
    pytest.param(body_with(description="<script>"), "IMG.0054", id="description with angle brackets"),
    pytest.param(body_with(description=["not", "text"]), "IMG.0054", id="description not a string"),
    # os_type
    pytest.param(body_with(os_type="linux"), "IMG.0122", id="os_type in the wrong case"),
    pytest.param(body_with(os_type="FreeBSD"), "IMG.0122", id="os_type unknown"),
    # image_url
    pytest.param(body_with(image_url=_ABSENT), "IMG.0017", id="image_url missing"),
    pytest.param(body_with(image_url="no-colon-here"), "IMG.0017", id="image_url without a colon"),
    pytest.param(body_with(image_url=":disk.qcow2"), "IMG.0068", id="image_url with an empty bucket"),
    pytest.param(body_with(image_url="Image_Test:disk.qcow2"), "IMG.0109", id="bucket with capitals and underscore"),
    pytest.param(body_with(image_url="ab:disk.qcow2"), "IMG.0109", id="bucket of 2 characters"),
    pytest.param(body_with(image_url="-images:disk.qcow2"), "IMG.0109", id="bucket starting with a hyphen"),
    pytest.param(body_with(image_url="192.168.1.10:disk.qcow2"), "IMG.0109", id="bucket shaped like an IP address"),
    pytest.param(body_with(image_url="image-test:"), "IMG.0017", id="image_url without an object"),
    pytest.param(body_with(image_url="image-test:my disks/d.qcow2"), "IMG.0175", id="space in the folder name"),
    pytest.param(body_with(image_url="image-test:disks/my disk.qcow2"), "IMG.0175", id="space in the file name"),
    pytest.param(body_with(image_url=123), "IMG.0017", id="image_url not a string"),
    # min_disk
    pytest.param(body_with(min_disk=_ABSENT), "IMG.0055", id="min_disk missing"),
    pytest.param(body_with(min_disk=39), "IMG.0055", id="min_disk 39"),
    pytest.param(body_with(min_disk=2049), "IMG.0055", id="min_disk 2049"),
    pytest.param(body_with(min_disk="40"), "IMG.0055", id="min_disk as a string"),
    pytest.param(body_with(min_disk=True), "IMG.0055", id="min_disk true"),
    pytest.param(body_with(min_disk=40.5), "IMG.0055", id="min_disk 40.5"),
    pytest.param(body_with(min_disk=None), "IMG.0055", id="min_disk null"),
    # cmk_id
    pytest.param(body_with(cmk_id="not a key"), "IMG.0095", id="cmk_id not shaped like a key"),
    pytest.param(body_with(cmk_id=7), "IMG.0095", id="cmk_id not a string"),
    # tags
    pytest.param(body_with(tags=["aaa.111"], image_tags=[{"key": "b", "value": "2"}]), "IMG.0115", id="both forms"),
    pytest.param(body_with(tags=[f"k{n}.v" for n in range(11)]), "IMG.0116", id="11 tags"),
    pytest.param(
        body_with(image_tags=[{"key": f"k{n}", "value": "v"} for n in range(11)]), "IMG.0116", id="11 image_tags"
    ),
    pytest.param(body_with(tags=[".value"]), "IMG.0115", id="tag with an empty key"),
    pytest.param(body_with(tags=["k" * 37 + ".v"]), "IMG.0115", id="tag key of 37 characters"),
    pytest.param(body_with(tags=["key." + "v" * 44]), "IMG.0115", id="tag value of 44 characters"),
    pytest.param(body_with(tags=["ke y.value"]), "IMG.0115", id="tag key with a space"),
    pytest.param(body_with(tags=["key.va!ue"]), "IMG.0115", id="tag value with punctuation"),
    pytest.param(body_with(tags=["a.1", "a.2"]), "IMG.0115", id="tag key repeated"),
    pytest.param(body_with(tags="aaa.111"), "IMG.0115", id="tags not a list"),
    pytest.param(body_with(image_tags=[{"key": "", "value": "1"}]), "IMG.0115", id="image tag with an empty key"),
    pytest.param(
        body_with(image_tags=[{"key": "k", "value": "v", "extra": 1}]), "IMG.0115", id="image tag extra field"
    ),
    pytest.param(body_with(image_tags=["k.v"]), "IMG.0115", id="image_tags holding strings"),
    # ova_disk (a diskport extension)
    pytest.param(body_with(ova_disk=""), "IMG.0017", id="ova_disk empty"),
    pytest.param(body_with(ova_disk="a/disk.vmdk"), "IMG.0017", id="ova_disk with a slash"),
    pytest.param(body_with(ova_disk="d" * 256), "IMG.0017", id="ova_disk of 256 characters"),
    pytest.param(body_with(ova_disk=2), "IMG.0017", id="ova_disk not a string"),
]


@pytest.mark.parametrize(("body", "code"), REJECTED)
def test_a_request_breaking_a_rule_gets_its_ims_code_and_writes_nothing(stack: Any, body: Any, code: str) -> None:
    # When
    answer = stack.call_api("POST", ROUTE, body=body)

    # Then
    assert answer.status == 400
    assert answer.body["error"]["code"] == code
    assert answer.body["error"]["message"]
    assert stack.table("JobsTable").scan()["Items"] == []
    assert stack.executions() == []


@pytest.mark.parametrize(
    ("raw_body", "code"),
    [
        pytest.param("", "IMG.0007", id="empty body"),
        pytest.param("   ", "IMG.0007", id="blank body"),
        pytest.param("{not json", "IMG.0001", id="invalid JSON"),
        pytest.param("[1, 2]", "IMG.0001", id="a JSON array"),
        pytest.param('"text"', "IMG.0001", id="a JSON string"),
        pytest.param("null", "IMG.0001", id="JSON null"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(stack: Any, raw_body: str, code: str) -> None:
    answer = stack.call_api("POST", ROUTE, raw_body=raw_body)

    assert answer.status == 400
    assert answer.body["error"]["code"] == code
    assert stack.table("JobsTable").scan()["Items"] == []
    assert stack.executions() == []


ACCEPTED = [
    pytest.param(body_with(name="n" * 128), id="name of 128 characters"),
    pytest.param(body_with(name="Données disque 1"), id="name with non-ASCII letters and an inner space"),
    pytest.param(body_with(name="a.b-c_d"), id="name with dot, hyphen and underscore"),
    pytest.param(body_with(description="d" * 1024), id="description of 1024 characters"),
    pytest.param(body_with(description=None), id="description null"),
    pytest.param(body_with(os_type="Windows"), id="os_type Windows"),
    pytest.param(body_with(min_disk=2048), id="min_disk 2048"),
    pytest.param(body_with(image_url="image.test-1:a/b/c:d.vmdk"), id="object key holding a colon"),
    pytest.param(body_with(cmk_id="1234abcd-12ab-34cd-56ef-1234567890ab"), id="cmk_id a key id"),
    pytest.param(
        body_with(cmk_id="arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"), id="key ARN"
    ),
    pytest.param(body_with(cmk_id="alias/disk-images"), id="cmk_id an alias"),
    pytest.param(body_with(tags=[f"k{n}.v" for n in range(10)]), id="10 tags"),
    pytest.param(body_with(tags=["k" * 36 + "." + "v" * 43]), id="tag key 36 and value 43 characters"),
    pytest.param(body_with(tags=["key."]), id="tag with an empty value"),
    pytest.param(body_with(image_tags=[{"key": f"k{n}", "value": "v"} for n in range(10)]), id="10 image_tags"),
    pytest.param(body_with(unknown_field="ignored"), id="an unknown field"),
    pytest.param(body_with(image_url="image-test:vm.ova", ova_disk="vmdisk2"), id="ova_disk an OVF disk id"),
]


@pytest.mark.parametrize("body", ACCEPTED)
def test_a_request_at_the_edge_of_every_rule_is_accepted(stack: Any, body: dict[str, Any]) -> None:
    answer = stack.call_api("POST", ROUTE, body=body)

    assert answer.status == 200, answer.body
    assert len(stack.table("JobsTable").scan()["Items"]) == 1
    assert [execution["name"] for execution in stack.executions()] == [answer.body["job_id"]]
