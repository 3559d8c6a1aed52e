"""Prompt templates and the parsing and validation of AI answers."""

import pytest

from connectors.errors import ConfigError, OutputError
from connectors.prompts import (
    json_schema_response_format,
    parse_output,
    render_prompt,
    repair_prompt,
    template_variables,
    validate_schema,
    validate_template,
)

SCHEMA = {
    "type": "object",
    "required": ["decision"],
    "properties": {"decision": {"enum": ["approve", "reject"]}},
}


def test_renders_without_html_escaping_and_none_as_empty():
    prompt = render_prompt(
        "Note: {{ text }} <{{ who|upper }}>{{ missing }}|{{ empty }}",
        {"text": 'Tom & Jerry\'s "deal"', "who": "ann", "empty": None},
    )

    assert prompt == 'Note: Tom & Jerry\'s "deal" <ANN>|'


def test_a_broken_template_is_a_config_error():
    with pytest.raises(ConfigError, match="does not compile"):
        render_prompt("{% if %}", {})


@pytest.mark.parametrize(
    "template",
    [
        "{% load static %}",
        "{% include 'x.html' %}",
        "{% extends 'base.html' %}",
        "{% debug %}",
    ],
)
def test_templates_cannot_reach_files_or_libraries(template):
    with pytest.raises(ValueError, match="not allowed"):
        validate_template(template)


def test_lists_the_variables_a_template_reads():
    template = (
        "{{ a }} {{ b.c|lower }} {% if d and not e %}{{ f }}{% endif %}"
        "{% for item in items %}{{ item }}{% endfor %}"
    )

    assert template_variables(template) >= {"a", "b", "d", "e", "f", "items"}


def test_text_output_is_wrapped():
    assert parse_output("  hello ", "text", None) == {"text": "  hello "}


def test_json_output_is_parsed_from_a_code_fence_and_validated():
    assert parse_output('```json\n{"decision": "approve"}\n```', "json", SCHEMA) == {
        "decision": "approve"
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "the answer is not valid JSON"),
        ('["approve"]', "must be a JSON object, got list"),
        ('{"decision": "maybe"}', "does not match the schema: 'maybe' is not one of"),
        ("{}", "'decision' is a required property at $"),
    ],
)
def test_invalid_answers_say_why(text, message):
    with pytest.raises(OutputError) as caught:
        parse_output(text, "json", SCHEMA)

    assert message in caught.value.message
    assert caught.value.permanent


def test_repair_prompt_quotes_the_error_and_the_answer():
    prompt = repair_prompt("Decide.", '{"decision": "maybe"}', "bad enum")

    assert prompt.startswith("Decide.\n\nYour previous answer was invalid: bad enum\n")
    assert '{"decision": "maybe"}' in prompt


def test_schema_validation():
    validate_schema(SCHEMA)
    with pytest.raises(ValueError, match="must be an object"):
        validate_schema(["not", "a", "schema"])
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        validate_schema({"type": 12})


def test_response_format_is_openai_json_schema():
    assert json_schema_response_format(SCHEMA) == {
        "type": "json_schema",
        "json_schema": {"name": "result", "schema": SCHEMA, "strict": False},
    }


@pytest.mark.parametrize(
    "template",
    [
        "Approve or reject: {{ text }} (customer contact {{ email }}). Answer JSON.",
        "{{text}}{{email}}",
        "no variables at all",
        "{{ missing }} stays empty, {{ True }} and {{ None }} are Django's",
        "{{ text|upper }} is filtered",
        "{% if email %}{{ email }}{% endif %} is a tag",
        "{{ customer.email }} is a dotted lookup, {{ 'x' }} a literal",
    ],
)
@pytest.mark.parametrize(
    "fields",
    [
        {"text": "<b>a & b</b>", "email": "[REDACTED EMAIL]"},
        {"text": "1234567.5 looks like a number", "email": None},
        {"text": 1234567.5, "email": ["a", 1]},  # not text: Django renders it
    ],
)
def test_a_plain_template_renders_exactly_as_django_does(template, fields):
    from django.template import Context

    from connectors.prompts import compile_template

    context = {name: "" if value is None else value for name, value in fields.items()}
    expected = compile_template(template).render(Context(context, autoescape=False))

    assert render_prompt(template, fields) == expected


def test_only_text_and_plain_variables_take_the_joined_path():
    from connectors.prompts import plain_pieces

    assert plain_pieces("Note: {{ text }}.") == ((True, "Note: "), (False, "text"), (True, "."))
    assert plain_pieces("{{ text|upper }}") is None
    assert plain_pieces("{% if text %}x{% endif %}") is None
    assert plain_pieces("{{ None }}") is None
