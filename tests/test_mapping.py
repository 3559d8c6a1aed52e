"""Paths, transforms and field mapping: pure functions, tested with tables."""

import pytest

from connectors.errors import MappingError
from connectors.mapping import (
    FieldSpec,
    PathNotFound,
    apply_transforms,
    map_fields,
    parse_path,
    parse_transforms,
    parsed_path,
    resolve_path,
    validate_target_name,
)

RECORD = {"customer": {"address": {"zip": "10115"}}, "lines": [{"amount": 3}, {"amount": 7}]}


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("text", ["text"]),
        ("customer.address.zip", ["customer", "address", "zip"]),
        ("lines[0].amount", ["lines", 0, "amount"]),
        ("lines[-1]", ["lines", -1]),
        ("matrix[1][2]", ["matrix", 1, 2]),
    ],
)
def test_parses_paths(path, parts):
    assert parse_path(path) == parts
    assert parsed_path(path) == tuple(parts)  # the cached parse resolve_path uses
    assert parsed_path(path) is parsed_path(path)


@pytest.mark.parametrize("path", ["", " ", "a..b", "a.", "a[x]", "[0", "a[0]b", ".a"])
def test_refuses_malformed_paths(path):
    with pytest.raises(ValueError):
        parse_path(path)
    with pytest.raises(ValueError):
        parsed_path(path)  # a refusal is not cached as a path


@pytest.mark.parametrize(
    ("path", "value"),
    [("customer.address.zip", "10115"), ("lines[1].amount", 7), ("lines[-1].amount", 7)],
)
def test_resolves_paths(path, value):
    assert resolve_path(RECORD, path) == value


@pytest.mark.parametrize(
    "path", ["customer.phone", "lines[5].amount", "lines.amount", "customer[0]", "lines[0].x.y"]
)
def test_missing_paths_are_not_found(path):
    with pytest.raises(PathNotFound):
        resolve_path(RECORD, path)


@pytest.mark.parametrize(
    ("value", "transforms", "expected"),
    [
        ("  Hello ", "strip|lower", "hello"),
        ("abc", "upper", "ABC"),
        ("abcdef", "truncate:3", "abc"),
        (None, "default:n/a", "n/a"),
        ("", "default:x:y", "x:y"),
        (42, "strip|upper|truncate:1", 42),
        ("kept", "default:other", "kept"),
        (" 42 ", "int", 42),
        ("2.5", "float", 2.5),
        (7, "str", "7"),
        (None, "int|default:0", "0"),
    ],
)
def test_applies_transforms(value, transforms, expected):
    assert apply_transforms(value, parse_transforms(transforms)) == expected


@pytest.mark.parametrize("text", ["shout", "truncate", "truncate:0", "truncate:x", "default"])
def test_refuses_bad_transforms(text):
    with pytest.raises(ValueError):
        parse_transforms(text)


@pytest.mark.parametrize("name", ["1st", "_private", "with space", "a-b", ""])
def test_refuses_target_names_a_template_cannot_use(name):
    with pytest.raises(ValueError):
        validate_target_name(name)


def test_maps_fields_with_missing_optional_ones_as_none():
    specs = [
        FieldSpec("customer.address.zip", "zip", required=True),
        FieldSpec("lines[0].amount", "first"),
        FieldSpec("customer.phone", "phone"),
        FieldSpec("customer.fax", "fax", transform="default:none"),
    ]

    assert map_fields(RECORD, specs) == {"zip": "10115", "first": 3, "phone": None, "fax": "none"}


def test_a_failed_conversion_names_the_field_without_its_value():
    with pytest.raises(MappingError) as caught:
        map_fields({"amount": "12 chairs"}, [FieldSpec("amount", "amount", "int")])

    assert caught.value.message == "field 'amount': int conversion failed"


def test_missing_required_field_names_the_path():
    with pytest.raises(MappingError) as caught:
        map_fields({"text": "  "}, [FieldSpec("text", "text", "strip", required=True)])

    assert caught.value.field == "text"
    assert caught.value.message == "required field 'text' is missing"


def test_without_specs_the_record_is_the_fields():
    assert map_fields({"a": 1}, []) == {"a": 1}
    assert map_fields("plain", []) == {"value": "plain"}


def test_a_record_that_is_not_an_object_is_refused():
    with pytest.raises(MappingError, match="must be a JSON object"):
        map_fields("plain", [FieldSpec("a", "a")])
