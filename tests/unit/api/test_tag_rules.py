"""The tag rules of image_tag_format.rst (ims-api.md §1) at their boundaries, wherever tags are given: the create
request's `tags` and `image_tags`, and the batch tag action."""

from __future__ import annotations

from typing import Any

import pytest
from diskport.domain.image_tags import TagActionRequest
from diskport.domain.requests import CreateDataImageRequest, ims_code_of
from pydantic import ValidationError

CREATE = {"name": "fedora-data1", "image_url": "image-test:fedora_data1.qcow2", "min_disk": 40}

ACCEPTED_PAIRS = [
    pytest.param("os", "version.1.2", id="dots in a value"),
    pytest.param("k" * 36, "v" * 43, id="key of 36, value of 43"),
    pytest.param("key", "", id="empty value"),
    pytest.param("环境", "生产", id="CJK key and value"),
    pytest.param("一" * 36, "龥" * 43, id="CJK at both ends of the range, at the length limits"),
    pytest.param("build_id-2", "v1.0_rc-3", id="underscore and hyphen"),
]
REFUSED_PAIRS = [
    pytest.param("", "v", id="empty key"),
    pytest.param("k" * 37, "v", id="key of 37"),
    pytest.param("key", "v" * 44, id="value of 44"),
    pytest.param("ke y", "v", id="space inside a key"),
    pytest.param("key", "va lue", id="space inside a value"),
    pytest.param("key", "va!ue", id="punctuation in a value"),
    pytest.param("ключ", "v", id="non-CJK letters in a key"),
    pytest.param("key", "값", id="Hangul in a value (outside U+4E00-U+9FFF)"),
]


def code_of(error: ValidationError) -> str:
    return ims_code_of(error).code


@pytest.mark.parametrize(("key", "value"), ACCEPTED_PAIRS)
def test_a_valid_tag_is_accepted_in_every_form(key: str, value: str) -> None:
    assert CreateDataImageRequest.model_validate({**CREATE, "tags": [f"{key}.{value}"]}).tag_pairs() == [(key, value)]
    as_object = {"key": key, "value": value}
    assert CreateDataImageRequest.model_validate({**CREATE, "image_tags": [as_object]}).tag_pairs() == [(key, value)]
    action = TagActionRequest.model_validate({"action": "create", "tags": [as_object]})
    assert [(tag.key, tag.value) for tag in action.tags] == [(key, value)]


@pytest.mark.parametrize(("key", "value"), REFUSED_PAIRS)
def test_an_invalid_tag_is_refused_with_img_0115_in_every_form(key: str, value: str) -> None:
    bodies: list[tuple[type[Any], dict[str, Any]]] = [
        (CreateDataImageRequest, {**CREATE, "image_tags": [{"key": key, "value": value}]}),
        (TagActionRequest, {"action": "create", "tags": [{"key": key, "value": value}]}),
    ]
    if "." not in key:  # in the string form a dot in the key would only move the split
        bodies.append((CreateDataImageRequest, {**CREATE, "tags": [f"{key}.{value}"]}))
    for model, body in bodies:
        with pytest.raises(ValidationError) as refused:
            model.model_validate(body)
        assert code_of(refused.value) == "IMG.0115", (model.__name__, body)


def test_spaces_around_image_tag_keys_and_values_are_trimmed() -> None:
    request = CreateDataImageRequest.model_validate({**CREATE, "image_tags": [{"key": "  aaa ", "value": " 1.0  "}]})
    assert request.tag_pairs() == [("aaa", "1.0")]
    action = TagActionRequest.model_validate({"action": "create", "tags": [{"key": " env", "value": "prod "}]})
    assert [(tag.key, tag.value) for tag in action.tags] == [("env", "prod")]


@pytest.mark.parametrize(("count", "code"), [(10, None), (11, "IMG.0116")], ids=["10 tags accepted", "11 tags refused"])
def test_at_most_ten_tags_in_one_batch_action(count: int, code: str | None) -> None:
    body = {"action": "create", "tags": [{"key": f"k{n}", "value": "v"} for n in range(count)]}
    if code is None:
        assert len(TagActionRequest.model_validate(body).tags) == count
        return
    with pytest.raises(ValidationError) as refused:
        TagActionRequest.model_validate(body)
    assert code_of(refused.value) == code


@pytest.mark.parametrize(
    "body",
    [
        {"action": "Create", "tags": [{"key": "k", "value": "v"}]},
        {"action": "update", "tags": [{"key": "k", "value": "v"}]},
        {"tags": [{"key": "k", "value": "v"}]},
    ],
    ids=["action in the wrong case", "unknown action", "no action"],
)
def test_a_batch_action_other_than_create_or_delete_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as refused:
        TagActionRequest.model_validate(body)
    assert code_of(refused.value) == "IMG.0001"


def test_a_batch_action_repeating_a_key_is_refused() -> None:
    body = {"action": "create", "tags": [{"key": "k", "value": "1"}, {"key": " k", "value": "2"}]}
    with pytest.raises(ValidationError) as refused:
        TagActionRequest.model_validate(body)
    assert code_of(refused.value) == "IMG.0115"
