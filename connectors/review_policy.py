"""A connector's review policy: never, always, or a condition over the validated answer and the
mapped record, in rule-engine's small expression language (its own grammar and evaluator: no
Python `eval`, no attribute of a Python object is reachable).

    decision == "reject" or record["amount"] > 10000 or confidence < 0.8 or reason == null

Names are the answer's fields; `record` is the mapped input as the AI saw it (redacted),
`result` the output-mapped result, `answer` the whole answer (a text answer is `text`). An answer
field that is missing reads as `null` (`record&["amount"]` reads a missing input field as null).
A condition that cannot be evaluated on an answer (comparing null or text with a number) holds
the answer: a person looks rather than nobody.
"""

import functools
from dataclasses import dataclass
from typing import Any

import rule_engine
from rule_engine import errors

NEVER, ALWAYS, CONDITION = "never", "always", "condition"
RESERVED = ("answer", "record", "result")
MAX_LENGTH = 500  # the rule is stored with the review
SCHEMA_TYPES = {
    "string": rule_engine.DataType.STRING,
    "number": rule_engine.DataType.FLOAT,
    "integer": rule_engine.DataType.FLOAT,
    "boolean": rule_engine.DataType.BOOLEAN,
    "array": rule_engine.DataType.ARRAY,
    "object": rule_engine.DataType.MAPPING,
}
EVALUATION = rule_engine.Context(
    default_value=None, resolver=rule_engine.resolve_item, mapping_attribute_lookup=False
)


@dataclass(frozen=True)
class Policy:
    kind: str = NEVER
    condition: str = ""

    @property
    def reads_the_answer(self) -> bool:
        """Whether the condition needs the AI's answer (Preview cannot tell without one)."""
        return self.kind == CONDITION and bool(symbols(self.condition) - {"record"})

    def holds(self, answer: Any, record: dict | None, result: dict | None) -> str:
        """The rule that holds this answer for review, or "" when it may be written back."""
        if self.kind == ALWAYS:
            return "always"
        if self.kind != CONDITION:
            return ""
        try:
            matched = compiled(self.condition).matches(names(answer, record, result))
        except errors.EngineError as error:
            problem = getattr(error, "message", "") or type(error).__name__
            return f"{self.condition} (could not be evaluated: {problem})"[:MAX_LENGTH]
        return self.condition if matched else ""


def for_connector(connector) -> Policy:
    return Policy(connector.review_policy, connector.review_condition.strip())


def names(answer: Any, record: dict | None, result: dict | None) -> dict:
    """What a condition reads: the answer's fields, then the three reserved names."""
    found = dict(answer) if isinstance(answer, dict) else {}
    found.update(answer=answer, record=record or {}, result=result or {})
    return found


@functools.lru_cache(maxsize=256)
def compiled(condition: str) -> rule_engine.Rule:
    return rule_engine.Rule(condition, context=EVALUATION)


def symbols(condition: str) -> set[str]:
    """The top-level names a condition reads."""
    seen: set[str] = set()

    def note(name: str):
        seen.add(name)
        return rule_engine.DataType.UNDEFINED

    try:
        rule_engine.Rule(
            condition,
            context=rule_engine.Context(type_resolver=note, mapping_attribute_lookup=False),
        )
    except errors.EngineError:
        return set()
    return seen


def check(kind: str, condition: str, output_schema: Any) -> None:
    """Raise ValueError saying what is wrong with a policy, for the form field at fault.

    A name that neither the answer's schema nor the reserved names provide is refused (a typo
    would otherwise never hold anything), and so is a comparison the schema's types rule out."""
    condition = condition.strip()
    if kind != CONDITION:
        return
    if not condition:
        raise ValueError('write the condition, e.g. decision == "reject" or amount > 10000')
    if len(condition) > MAX_LENGTH:
        raise ValueError(f"at most {MAX_LENGTH} characters")
    fields = schema_fields(output_schema)

    def resolve(name: str):
        if name in RESERVED:
            return rule_engine.DataType.MAPPING
        if fields is None:  # a schema that does not list its fields: any name may come
            return rule_engine.DataType.UNDEFINED
        if name not in fields:
            raise errors.SymbolResolutionError(name)
        return fields[name]

    context = rule_engine.Context(type_resolver=resolve, mapping_attribute_lookup=False)
    try:
        rule_engine.Rule(condition, context=context)
    except errors.SymbolResolutionError as error:
        known = ", ".join([*sorted(fields or {}), *RESERVED])
        raise ValueError(
            f"the answer has no field {error.symbol_name!r} (names: {known})"
        ) from None
    except errors.RuleSyntaxError as error:
        raise ValueError(syntax_problem(condition, error)) from None
    except errors.EngineError as error:
        problem = getattr(error, "message", "") or type(error).__name__
        if "attribute access on a MAPPING" in problem:
            raise ValueError('read a field as record["amount"], not record.amount') from None
        raise ValueError(f"the answer's types rule it out ({problem})") from None


def schema_fields(schema: Any) -> dict | None:
    """The answer's fields and their types from its JSON Schema; None when it lists none."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return None if isinstance(schema, dict) else {}
    fields = {}
    for name, spec in schema["properties"].items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(spec, dict) and "enum" in spec and kind is None:
            values = spec["enum"]
            kind = "string" if values and all(isinstance(v, str) for v in values) else None
        fields[name] = SCHEMA_TYPES.get(kind, rule_engine.DataType.UNDEFINED)
    return fields


def syntax_problem(condition: str, error: errors.RuleSyntaxError) -> str:
    token = error.token
    if token is None:
        return "the condition ends too early (an operator or value is missing at the end)"
    return f"syntax error at {token.value!r} (character {token.lexpos + 1})"
