"""SQL written in the services names its tables' rows in words: no one-letter alias (`FROM transfers t`,
`JOIN pg_class c`, `) s`) in the SQL text of services/ and tools/, and no one-letter module-level name for a table
in the Python of the services listed in TABLE_ALIAS_DIRECTORIES, nor inside their functions (`t = store.transfers`).
Migrations are history, applied as written."""

from __future__ import annotations

import ast
import importlib
import io
import pathlib
import re
import tokenize
import types

import sqlalchemy as sa
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from nerava.incentives.v1 import incentives_pb2

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Where a table is named in words (`campaigns`, or `store.campaigns` itself), never `C`.
TABLE_ALIAS_DIRECTORIES = (
    "services/accounts",
    "services/common",
    "services/incentives",
    "services/ledger",
    "services/merchants",
    "services/reconcile",
    "services/sessions",
)
_SQL = re.compile(r"\b(SELECT|UPDATE|INSERT|DELETE|WITH)\b")
_ONE_LETTER_ALIAS = re.compile(
    r"(?:\b(?:FROM|JOIN|INTO|UPDATE)\s+[a-z_][\w.]*|\))\s+(?:AS\s+)?[a-z]\b(?!\.)|\bAS\s+[a-z]\b(?!\.)"
)


def one_letter_aliases(source: str) -> list[str]:
    """`line: alias declaration` of every one-letter table alias in the SQL strings of a Python module."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.STRING and _SQL.search(token.string):
            for match in _ONE_LETTER_ALIAS.finditer(token.string):
                line = token.start[0] + token.string.count("\n", 0, match.start())
                found.append(f"{line}: {' '.join(match.group().split())}")
    return found


def test_sql_in_the_services_has_no_one_letter_aliases() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{hit}"
        for directory in ("services", "tools")
        for path in sorted((ROOT / directory).rglob("*.py"))
        if "migrations/versions" not in path.as_posix()
        for hit in one_letter_aliases(path.read_text())
    ]
    assert found == []


def test_the_check_finds_one_letter_aliases() -> None:
    source = (
        'A = "SELECT t.id FROM ledger.transfers t JOIN entries AS e ON e.transfer_id = t.id"\n'
        'B = """SELECT one FROM (SELECT 1 AS one) s"""\n'
        'C = "SELECT transfer.id FROM transfers AS transfer WHERE transfer.kind = 5"\n'
        'D = "SELECT coalesce(a, b) FROM accounts"\n'
        'E = "SELECT r.* FROM unnest($1::text[]) WITH ORDINALITY AS a(key, position)"\n'
    )
    assert one_letter_aliases(source) == [
        "1: FROM ledger.transfers t",
        "1: JOIN entries AS e",
        "2: ) s",
        "5: AS a",
    ]


def one_letter_table_names(module: types.ModuleType) -> list[str]:
    """The one-letter module-level names of `module` that hold a table or a proto enum (defined there or
    imported): `S.CAMPAIGN_STATUS_ACTIVE` says less than `pb.CAMPAIGN_STATUS_ACTIVE`."""
    return sorted(
        name
        for name, value in vars(module).items()
        if len(name) == 1 and isinstance(value, sa.sql.FromClause | EnumTypeWrapper)
    )


def _modules(directory: str) -> list[str]:
    return [
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in sorted((ROOT / directory).rglob("*.py"))
        if "migrations" not in path.parts and path.name not in {"__init__.py", "__main__.py"}
    ]


def test_the_listed_services_name_their_tables_in_words() -> None:
    found = [
        f"{name}: {alias}"
        for directory in TABLE_ALIAS_DIRECTORIES
        for name in _modules(directory)
        for alias in one_letter_table_names(importlib.import_module(name))
    ]
    assert found == []


def test_the_check_finds_a_one_letter_table_name() -> None:
    metadata = sa.MetaData()
    campaigns = sa.Table("campaigns", metadata, sa.Column("id", sa.Text, primary_key=True))
    module = types.ModuleType("example")
    module.C = campaigns  # type: ignore[attr-defined]
    module.campaigns = campaigns  # type: ignore[attr-defined]
    vars(module)["P"] = 5  # a one-letter name that is not a table is another rule's business
    vars(module)["G"] = campaigns.alias("g")  # an aliased table counts too
    vars(module)["S"] = incentives_pb2.CampaignStatus  # and a proto enum
    assert one_letter_table_names(module) == ["C", "G", "S"]


def one_letter_local_tables(source: str, table_names: set[str]) -> list[str]:
    """`line: name = value` of every one-letter name that a function binds to a table: one of `table_names`
    (`t = transfers`, `g = store.grants`, in a tuple too) or an aliased table (`x = accounts.alias("x")`)."""

    def is_table(value: ast.expr) -> bool:
        if isinstance(value, ast.Attribute):
            return value.attr in table_names
        if isinstance(value, ast.Name):
            return value.id in table_names
        return isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "alias"

    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(target.elts, node.value.elts, strict=False))
                else:
                    pairs = [(target, node.value)]
                found += [
                    f"{node.lineno}: {name.id} = {ast.unparse(value)}"
                    for name, value in pairs
                    if isinstance(name, ast.Name) and len(name.id) == 1 and is_table(value)
                ]
    return found


def _table_names() -> set[str]:
    return {
        name
        for directory in TABLE_ALIAS_DIRECTORIES
        for module in _modules(directory)
        for name, value in vars(importlib.import_module(module)).items()
        if isinstance(value, sa.sql.FromClause)
    }


def test_no_function_names_a_table_with_one_letter() -> None:
    tables = _table_names()
    found = [
        f"{path.relative_to(ROOT)}:{hit}"
        for directory in TABLE_ALIAS_DIRECTORIES
        for path in sorted((ROOT / directory).rglob("*.py"))
        if "migrations" not in path.parts
        for hit in one_letter_local_tables(path.read_text(), tables)
    ]
    assert "transfers" in tables and "campaigns" in tables
    assert found == []


def test_the_check_finds_a_one_letter_table_inside_a_function() -> None:
    source = (
        "def reads():\n"
        "    t = store.transfers\n"
        "    a, e, n = accounts, entries, 5\n"
        "    s = accounts.alias('s')\n"
        "    transfers = store.transfers\n"
        "    x = store.settings\n"
    )
    assert one_letter_local_tables(source, {"transfers", "accounts", "entries"}) == [
        "2: t = store.transfers",
        "3: a = accounts",
        "3: e = entries",
        "4: s = accounts.alias('s')",
    ]
