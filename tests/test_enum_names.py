"""Enum values are written by name, never by number, in the contracts' CEL rules, in SQL and in Python: renumbering an
enum in its .proto must change every place that means one of its values, or fail here.

- CEL (protovalidate rules in proto/): a rule names a value (`this.kind == TRANSFER_KIND_REVERSAL`); tools/genproto.py
  puts the number in the generated code. An enum field's `in`/`not_in`/`const` rules would need numbers, so a rule
  listing values is written in CEL (only `not_in: [0]`, the UNSPECIFIED value buf lint pins to 0, stays).
- SQL and Python in services/ and tools/: an enum column or attribute is compared with the generated constant
  (`pb.REDEMPTION_STATUS_COMPLETED`, in SQL text through an f-string), never with a literal.
"""

from __future__ import annotations

import pathlib
import re
import tempfile
from collections.abc import Iterator
from typing import cast

from buf.validate import validate_pb2
from google.protobuf import descriptor_pb2

from tools import genproto

ROOT = pathlib.Path(__file__).resolve().parent.parent
# `this.a.b == 3`, `this.kind != 0`, `this.type in [1, 5]`: a path compared with a number or a list of numbers.
_COMPARED_WITH_NUMBERS = re.compile(r"this((?:\.\w+)*)\s*(?:==|!=|\bin\b)\s*(\[[\d\s,]*\]|\d+)")
_NAME_OUTSIDE_STRINGS = re.compile(r"'[^']*'|\b[A-Z][A-Z0-9_]*\b")


def _messages(image: descriptor_pb2.FileDescriptorSet) -> dict[str, descriptor_pb2.DescriptorProto]:
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, messages: Iterator[descriptor_pb2.DescriptorProto]) -> None:
        for message in messages:
            found[f"{prefix}.{message.name}"] = message
            walk(f"{prefix}.{message.name}", iter(message.nested_type))

    for file in image.file:
        walk(f".{file.package}", iter(file.message_type))
    return found


# protoc's .pyi types validate_pb2's extensions as plain FieldDescriptors, which types-protobuf refuses as an index.
def _message_rules(message: descriptor_pb2.DescriptorProto) -> validate_pb2.MessageRules:
    return cast(validate_pb2.MessageRules, message.options.Extensions[validate_pb2.message])  # type: ignore[index]


def _field_rules(field: descriptor_pb2.FieldDescriptorProto) -> validate_pb2.FieldRules:
    return cast(validate_pb2.FieldRules, field.options.Extensions[validate_pb2.field])  # type: ignore[index]


def _rules(
    image: descriptor_pb2.FileDescriptorSet,
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto, descriptor_pb2.FieldDescriptorProto | None, str]]:
    """(where, message, field or None for a message rule, CEL expression) of every CEL rule of the contracts."""
    for name, message in _messages(image).items():
        if not name.startswith(".nerava."):
            continue
        for rule in _message_rules(message).cel:
            yield name, message, None, rule.expression
        for field in message.field:
            for rule in _field_rules(field).cel:
                yield f"{name}.{field.name}", message, field, rule.expression


def _is_enum(
    messages: dict[str, descriptor_pb2.DescriptorProto],
    message: descriptor_pb2.DescriptorProto,
    field: descriptor_pb2.FieldDescriptorProto | None,
    path: str,
) -> bool:
    """Whether `this<path>` in a rule of `message` (of `field`, for a field rule) is an enum value."""
    current = field
    for part in [p for p in path.split(".") if p]:
        if current is not None:
            message = messages[current.type_name]
        current = next((f for f in message.field if f.name == part), None)
        if current is None:
            return False
    return current is not None and current.type == descriptor_pb2.FieldDescriptorProto.TYPE_ENUM


def _source_image() -> descriptor_pb2.FileDescriptorSet:
    with tempfile.TemporaryDirectory() as tmp:
        return genproto.source_descriptor_set(pathlib.Path(tmp))


def bare_numbers_in_rules(image: descriptor_pb2.FileDescriptorSet) -> list[str]:
    messages = _messages(image)
    found = []
    for where, message, field, expression in _rules(image):
        for match in _COMPARED_WITH_NUMBERS.finditer(expression):
            if _is_enum(messages, message, field, match.group(1)):
                found.append(f"{where}: `{match.group()}` in `{expression}`")
    for name, message in messages.items():
        for field in message.field if name.startswith(".nerava.") else ():
            rules = _field_rules(field).enum
            if list(getattr(rules, "in")) or [n for n in rules.not_in if n != 0] or rules.HasField("const"):
                found.append(f"{name}.{field.name}: an enum rule lists numbers; write it in CEL with names")
    return found


def test_the_contracts_cel_rules_name_enum_values() -> None:
    assert bare_numbers_in_rules(_source_image()) == []


def test_the_lint_catches_a_bare_enum_number_in_a_rule() -> None:
    image = _source_image()
    request = _messages(image)[".nerava.ledger.v1.PostTransferRequest"]
    _message_rules(request).cel.add(id="x", message="x", expression="this.kind == 7")
    assert bare_numbers_in_rules(image) == [
        ".nerava.ledger.v1.PostTransferRequest: `this.kind == 7` in `this.kind == 7`"
    ]


def test_every_name_in_a_generated_rule_is_an_enum_value_the_generator_resolved() -> None:
    image = descriptor_pb2.FileDescriptorSet.FromString((ROOT / "gen" / "nerava.binpb").read_bytes())
    unresolved = [
        f"{where}: {name.group()}"
        for where, _, _, expression in _rules(image)
        for name in _NAME_OUTSIDE_STRINGS.finditer(expression)
        if not name.group().startswith("'")
    ]
    assert unresolved == [], "not an enum value name of the contracts"


def test_the_generator_puts_numbers_for_names_and_leaves_strings_alone() -> None:
    numbers = {"TRANSFER_KIND_REVERSAL": 7}
    text = "expression: \"(this.kind == TRANSFER_KIND_REVERSAL) == (this.note != 'TRANSFER_KIND_REVERSAL')\""
    assert genproto.cel_with_numbers(text, numbers) == (
        "expression: \"(this.kind == 7) == (this.note != 'TRANSFER_KIND_REVERSAL')\""
    )


# --- SQL and Python ------------------------------------------------------------------------------------------------


def _enum_field_names() -> set[str]:
    """The names of the contracts' enum fields: the columns and attributes that hold an enum value."""
    image = descriptor_pb2.FileDescriptorSet.FromString((ROOT / "gen" / "nerava.binpb").read_bytes())
    return {
        field.name
        for name, message in _messages(image).items()
        if name.startswith(".nerava.")
        for field in message.field
        if field.type == descriptor_pb2.FieldDescriptorProto.TYPE_ENUM
    }


def bare_numbers_in_code(text: str, names: set[str]) -> list[str]:
    """`status = 2`, `t.kind = 5`, `row.status == 2`, `status IN (1, 2)`, `status=2` in SQL text or Python. Enum values
    are small numbers: three digits are an HTTP status (`response.status == 200`), not an enum value."""
    pattern = re.compile(
        r"\b(?:" + "|".join(sorted(names)) + r")\b\s*(?:=|==|<>|!=|\bIN\b|\bin\b)\s*\(?\s*\d{1,2}\b(?!\d)"
    )
    return [
        f"{number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith("#")
    ]


def test_sql_and_python_compare_enums_with_their_named_constants() -> None:
    names = _enum_field_names()
    found = []
    for directory in ("services", "tools", "gateway"):
        for path in sorted((ROOT / directory).rglob("*.py")):
            # Migrations are history, applied as written: a renumbering is a new migration.
            if "migrations/versions" in path.as_posix():
                continue
            found += [f"{path.relative_to(ROOT)}:{hit}" for hit in bare_numbers_in_code(path.read_text(), names)]
    assert found == []


def test_the_lint_catches_bare_enum_numbers_in_sql_and_python() -> None:
    names = {"status", "kind"}
    code = 'q = "WHERE t.kind = 5 AND status IN (1, 2)"\nok = row.status == pb.X\nhttp = response.status == 200\n'
    assert bare_numbers_in_code(code, names) == ['1: q = "WHERE t.kind = 5 AND status IN (1, 2)"']
