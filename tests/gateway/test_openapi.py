"""gen/openapi.json, generated from the descriptor set by `make proto` (gateway/openapi.py): valid OpenAPI 3.1,
an operation for every REST binding, and the contract's meaning carried into JSON Schema."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import httpx
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from openapi_spec_validator import validate

from gateway import openapi, redoc
from tests.support.gateway import Gateway
from tests.support.openapi import UndocumentedAnswer, check_answer

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
DESCRIPTOR = ROOT / "gen" / "nerava.binpb"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "gen" / "openapi.json").read_text())
    return loaded


def schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["components"]["schemas"][name]
    return found


def test_the_committed_document_is_what_the_generator_makes_and_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert json.loads(openapi.render(DESCRIPTOR.read_bytes())) == doc
    validate(doc)


def test_the_validator_refuses_a_document_the_generator_could_get_wrong(doc: dict[str, Any]) -> None:
    # The same path and answer as the committed document, alone in a document: validating the whole document
    # again costs 3 s, and what is checked here is that `validate` is not a no-op on such a mistake.
    answer = json.loads(json.dumps(doc["paths"]["/v1/wallet/balance"]["get"]["responses"]["200"]))
    small = {
        "openapi": doc["openapi"],
        "info": doc["info"],
        "paths": {"/v1/wallet/balance": {"get": {"responses": {"200": answer}}}},
    }
    answer.pop("content", None)
    validate(small)
    answer["required"] = True
    with pytest.raises(Exception, match="required"):
        validate(small)


def test_every_rest_binding_is_an_operation(doc: dict[str, Any]) -> None:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR.read_bytes())
    bindings = set()
    for file in files.file:
        if not file.package.startswith("nerava."):
            continue
        for service in file.service:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                for binding in [rule, *rule.additional_bindings]:
                    verb = binding.WhichOneof("pattern")
                    path = getattr(binding, verb)
                    bindings.add((verb, openapi._openapi_path(path)))
    documented = {(verb, path) for path, operations in doc["paths"].items() for verb in operations}
    assert documented == bindings
    assert len(bindings) > 80


def test_enums_print_by_name_and_64_bit_integers_as_strings(doc: dict[str, Any]) -> None:
    campaign = schema(doc, "nerava.incentives.v1.Campaign")["properties"]
    assert "CAMPAIGN_STATUS_ACTIVE" in campaign["status"]["enum"]
    transfer = schema(doc, "nerava.ledger.v1.Transfer")["properties"]
    assert transfer["amount"]["type"] == "string"
    assert transfer["amount"]["format"] == "int64"


def test_answers_require_the_primitive_fields_and_not_the_optional_ones(doc: dict[str, Any]) -> None:
    balance = schema(doc, "nerava.ledger.v1.GetWalletBalanceResponse")
    assert {"available_cents", "stripe_onboarding_complete"} <= set(balance["required"])
    session = schema(doc, "nerava.sessions.v1.ChargingSession")
    optional = [name for name, field in session["properties"].items() if name not in session.get("required", [])]
    assert optional, "proto3 optional and message fields may be absent"


def test_validation_rules_reach_the_request_schemas(doc: dict[str, Any]) -> None:
    withdraw = doc["paths"]["/v1/wallet/withdraw"]["post"]
    body = withdraw["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert body["amount_cents"]["exclusiveMinimum"] == 0
    assert body["amount_cents"]["maximum"] == 10_000_000
    assert body["request_id"]["format"] == "uuid"
    assert "PAYOUT_BELOW_MINIMUM" in withdraw["x-error-reasons"]
    assert "PAYOUT_BELOW_MINIMUM (INVALID_ARGUMENT)" in withdraw["responses"]["400"]["description"]


def test_paths_queries_bare_arrays_and_bytes(doc: dict[str, Any]) -> None:
    get_campaign = doc["paths"]["/v1/campaigns/{campaign_id}"]["get"]
    assert [p["name"] for p in get_campaign["parameters"] if p["in"] == "path"] == ["campaign_id"]
    search = doc["paths"]["/v1/chargers/search"]["get"]
    assert "q" in {p["name"] for p in search["parameters"] if p["in"] == "query"}
    timeline = doc["paths"]["/v1/wallet/timeline"]["get"]["responses"]["200"]["content"]["application/json"]
    assert timeline["schema"]["type"] == "array"
    card = doc["paths"]["/v1/merchants/{merchant_id}/share-card.png"]["get"]["responses"]["200"]["content"]
    assert card == {"*/*": {"schema": {"type": "string", "format": "binary"}}}


def test_the_service_comment_table_of_reasons_is_read() -> None:
    comment = """Errors carry a google.rpc.ErrorInfo with domain "x.nerava" and one of these reasons:
  NOT_THERE                  (NOT_FOUND)            no such thing, or one the caller
                                                    may not see
  TOO_LATE                   (FAILED_PRECONDITION)  it ended
Bad input is INVALID_ARGUMENT."""
    assert openapi.documented_reasons(comment) == {
        "NOT_THERE": ("NOT_FOUND", "no such thing, or one the caller may not see"),
        "TOO_LATE": ("FAILED_PRECONDITION", "it ended"),
    }


def test_the_answer_check_of_the_rest_fixture_refuses_an_undocumented_answer() -> None:
    def answer(path: str, status: int, body: object, method: str = "GET") -> httpx.Response:
        request = httpx.Request(method, f"http://gateway{path}")
        return httpx.Response(status, json=body, request=request)

    balance = {
        "available_cents": 0, "pending_cents": 0, "total_earned_cents": 0, "total_withdrawn_cents": 0,
        "can_withdraw": False, "minimum_withdrawal_cents": 2000, "fee_threshold_cents": 2000,
        "stripe_onboarding_complete": False, "nova_balance": 0,
    }  # fmt: skip
    check_answer(answer("/v1/wallet/balance", 200, balance))
    with pytest.raises(UndocumentedAnswer, match="available_cents"):
        check_answer(answer("/v1/wallet/balance", 200, {**balance, "available_cents": "12"}))
    with pytest.raises(UndocumentedAnswer, match="undocumented status 201"):
        check_answer(answer("/v1/wallet/balance", 201, balance))
    with pytest.raises(UndocumentedAnswer, match="answered 200"):
        check_answer(answer("/v1/nowhere", 200, {}))
    check_answer(answer("/v1/nowhere", 404, {"code": 5, "message": "no route", "details": []}))
    with pytest.raises(UndocumentedAnswer):
        check_answer(answer("/v1/nowhere", 404, {"error": "no route"}))


async def test_the_gateway_serves_the_document_and_a_docs_page(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        served = await client.get("/openapi.json")
        assert served.status_code == 200, served.text[:300]
        assert served.headers["content-type"] == "application/json"
        assert served.json() == json.loads((ROOT / "gen" / "openapi.json").read_text())
        page = await client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<redoc spec-url="/openapi.json">' in page.text
        assert '<script src="/docs/redoc.standalone.js">' in page.text
        bundle = await client.get("/docs/redoc.standalone.js")
        assert bundle.status_code == 200
        assert bundle.headers["content-type"] == "application/javascript"
        assert bundle.content == redoc.BUNDLE.read_bytes()
        # Only reads: the docs are not a way past the transcoder's refusal of unknown REST methods.
        assert (await client.post("/openapi.json", json={})).status_code == 404


def test_the_redoc_bundle_is_the_pinned_package(tmp_path: pathlib.Path) -> None:
    with pytest.raises(redoc.IntegrityError):
        redoc.extract(b"not the redoc package", tmp_path / "redoc.js")
    assert not (tmp_path / "redoc.js").exists()
