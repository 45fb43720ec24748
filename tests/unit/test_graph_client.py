"""The Graph client and MSAL token provider against the stand-in: retries, paging, $batch, error
mapping by code, token cache and failures, only the configured authority contacted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.graph.directory import BadRequest, NotFound, PermissionMissing, Throttled, TokenFailure, Unavailable
from bot.graph.graph_client import (
    BatchItem,
    GraphClient,
    MsalTokenProvider,
    error_from,
    graph_scope,
    parse_retry_after,
)
from bot.graph.graph_directory import REQUIRED
from bot.settings import GraphSettings
from tests.standins.graph import GraphStandIn

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

TENANT = "11111111-2222-4333-8444-555555555555"
CLIENT = "66666666-7777-4888-8999-000000000000"


def graph_settings(**kw: Any) -> GraphSettings:
    values: dict[str, Any] = {
        "tenant_id": TENANT,
        "client_id": CLIENT,
        "client_secret": "standin-client-secret",
        "retry_budget_seconds": 30,
    }
    values.update(kw)
    return GraphSettings(**values)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []
        self.now = 0.0

    async def sleep(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
async def rig() -> AsyncIterator[tuple[GraphStandIn, GraphClient, Sleeps]]:
    standin = GraphStandIn(page_size=2)
    sleeps = Sleeps()
    settings = graph_settings()
    tokens = MsalTokenProvider(settings, http_client=httpx.Client(transport=standin.transport()))
    client = GraphClient(
        settings,
        tokens,
        transport=standin.transport(),
        required=REQUIRED,
        sleep=sleeps.sleep,
        clock=sleeps.clock,
        rng=lambda: 0.5,
    )
    yield standin, client, sleeps
    await client.aclose()


async def test_token_acquired_once_and_cached(rig: tuple[GraphStandIn, GraphClient, Sleeps]) -> None:
    standin, client, _ = rig
    for _ in range(3):
        await client.request("GET", "/users/alice@example.com", operation="get_user")
    assert standin.token_requests == 1
    token_call = next(r for r in standin.requests if r.path.endswith("/oauth2/v2.0/token"))
    form = dict(pair.split("=", 1) for pair in token_call.body.split("&"))
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "https%3A%2F%2Fgraph.microsoft.com%2F.default"
    # MSAL talked only to the configured authority: no instance discovery elsewhere.
    hosts = {httpx.URL(r.url).host for r in standin.requests}
    assert hosts == {"login.microsoftonline.com", "graph.microsoft.com"}
    assert all("/common/discovery/instance" not in r.url for r in standin.requests)


async def test_bad_secret_is_a_token_failure_without_the_secret() -> None:
    standin = GraphStandIn()
    settings = graph_settings(client_secret="wrong-secret-value")
    tokens = MsalTokenProvider(settings, http_client=httpx.Client(transport=standin.transport()))
    client = GraphClient(settings, tokens, transport=standin.transport())
    with pytest.raises(TokenFailure) as info:
        await client.request("GET", "/users/x", operation="get_user")
    assert "invalid_client" in str(info.value) and "7000215" in str(info.value)
    assert "wrong-secret-value" not in str(info.value)
    await client.aclose()


async def test_unknown_tenant_is_a_token_failure() -> None:
    standin = GraphStandIn()
    settings = graph_settings(tenant_id="99999999-2222-4333-8444-555555555555")
    tokens = MsalTokenProvider(settings, http_client=httpx.Client(transport=standin.transport()))
    with pytest.raises(TokenFailure):
        await tokens.token()
    tokens.close()


async def test_certificate_credential(tmp_path: Any) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "helpdesk")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "app.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    standin = GraphStandIn()
    settings = GraphSettings(tenant_id=TENANT, client_id=CLIENT, certificate_path=pem)
    tokens = MsalTokenProvider(settings, http_client=httpx.Client(transport=standin.transport()))
    assert await tokens.token()
    call = next(r for r in standin.requests if r.path.endswith("/token"))
    assert "client_assertion=" in call.body and "client_secret" not in call.body
    tokens.close()


async def test_429_honours_retry_after(rig: tuple[GraphStandIn, GraphClient, Sleeps]) -> None:
    standin, client, sleeps = rig
    standin.fail("GET", r"^/users/alice@example.com$", 429, "TooManyRequests", retry_after="7", times=2)
    response = await client.request("GET", "/users/alice@example.com", operation="get_user")
    assert response.status == 200
    assert sleeps.calls == [7.0, 7.0]


async def test_503_without_retry_after_backs_off_exponentially(
    rig: tuple[GraphStandIn, GraphClient, Sleeps],
) -> None:
    standin, client, sleeps = rig
    standin.fail("GET", r"^/users/alice@example.com$", 503, "serviceNotAvailable", times=3)
    await client.request("GET", "/users/alice@example.com", operation="get_user")
    assert sleeps.calls == [0.25, 0.5, 1.0]  # base 0.5 * 2^n * jitter(0.5)


async def test_504_retried_then_budget_exhausted(rig: tuple[GraphStandIn, GraphClient, Sleeps]) -> None:
    standin, client, sleeps = rig
    standin.fail("POST", r"/revokeSignInSessions$", 429, "TooManyRequests", retry_after="20", times=10)
    with pytest.raises(Throttled) as info:
        await client.request(
            "POST", "/users/alice@example.com/revokeSignInSessions", operation="revoke_sessions"
        )
    assert sleeps.calls == [20.0]  # a second 20 s wait would pass the 30 s budget
    assert info.value.request_id and info.value.code == "TooManyRequests"
    standin.fail("GET", r"^/users/bob@example.com$", 504, "gatewayTimeout", times=100)
    with pytest.raises(Unavailable):
        await client.request("GET", "/users/bob@example.com", operation="get_user")


async def test_errors_mapped_by_code_with_request_id(rig: tuple[GraphStandIn, GraphClient, Sleeps]) -> None:
    standin, client, _ = rig
    with pytest.raises(NotFound) as missing:
        await client.request("GET", "/users/nobody@example.com", operation="get_user")
    assert missing.value.code == "Request_ResourceNotFound" and missing.value.request_id
    standin.fail("PATCH", r"^/users/", 403, "Authorization_RequestDenied")
    with pytest.raises(PermissionMissing) as denied:
        await client.request(
            "PATCH",
            "/users/alice@example.com",
            operation="reset_password",
            json={"passwordProfile": {"password": "x"}},
        )
    assert "User-PasswordProfile.ReadWrite.All" in denied.value.required


def test_error_mapping_ignores_message_text() -> None:
    body = {
        "error": {
            "code": "Request_BadRequest",
            "message": "Resource not found; access denied; throttled",
            "innerError": {"request-id": "r1", "date": "2026-01-01T00:00:00"},
        }
    }
    error = error_from(400, body, {}, operation="x")
    assert isinstance(error, BadRequest) and error.request_id == "r1"
    assert isinstance(
        error_from(400, {"error": {"code": "Request_ResourceNotFound"}}, {}, operation="x"), NotFound
    )
    assert isinstance(error_from(401, None, {}, operation="x"), TokenFailure)
    assert isinstance(error_from(502, None, {}, operation="x"), Unavailable)


def test_retry_after_parsing_and_scope() -> None:
    assert parse_retry_after("10") == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert graph_scope("https://graph.microsoft.us/v1.0") == "https://graph.microsoft.us/.default"
    assert graph_scope("https://127.0.0.1:8443/v1.0") == "https://127.0.0.1:8443/.default"


async def test_paging_follows_next_link(rig: tuple[GraphStandIn, GraphClient, Sleeps]) -> None:
    standin, client, _ = rig
    items = await client.get_all(
        "/users/0d8f8a1e-0000-4000-8000-000000000020/transitiveMemberOf",
        operation="memberships",
        params={"$select": "id,displayName"},
    )
    assert len(items) == 4  # three groups and a directory role, two per page
    pages = standin.calls("GET", r"/transitiveMemberOf$")
    assert len(pages) == 2 and "%24skiptoken" in pages[1].url


async def test_next_link_to_another_host_is_refused(rig: tuple[GraphStandIn, GraphClient, Sleeps]) -> None:
    _, client, _ = rig
    with pytest.raises(Exception, match="refusing to send a Graph token"):
        await client.request("GET", "https://evil.example.com/v1.0/users?$skiptoken=x", operation="get_user")


async def test_batch_parallel_with_inner_429_retried(rig: tuple[GraphStandIn, GraphClient, Sleeps]) -> None:
    standin, client, sleeps = rig
    standin.fail("GET", r"/licenseDetails$", 429, "TooManyRequests", retry_after="3")
    answers = await client.batch(
        [
            BatchItem("u", "GET", "/users/alice@example.com"),
            BatchItem("l", "GET", "/users/alice@example.com/licenseDetails"),
            BatchItem("x", "GET", "/users/nobody@example.com"),
        ],
        operation="account_details",
    )
    assert answers["u"].status == 200 and answers["l"].status == 200 and answers["x"].status == 404
    assert sleeps.calls == [3.0]
    first = standin.calls("POST", r"^/\$batch$")[0].json()
    assert [r["id"] for r in first["requests"]] == ["u", "l", "x"]
    assert all(r["url"].startswith("/users/") for r in first["requests"])
    with pytest.raises(NotFound):
        client.raise_for(answers["x"], "account_details")


async def test_batch_chunks_at_twenty(rig: tuple[GraphStandIn, GraphClient, Sleeps]) -> None:
    standin, client, _ = rig
    items = [BatchItem(str(i), "GET", "/users/alice@example.com") for i in range(45)]
    answers = await client.batch(items, operation="get_user")
    assert len(answers) == 45 and all(a.status == 200 for a in answers.values())
    sizes = [len(json.loads(r.body)["requests"]) for r in standin.calls("POST", r"^/\$batch$")]
    assert sizes == [20, 20, 5]


async def test_connection_error_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    standin = GraphStandIn()
    sleeps = Sleeps()
    settings = graph_settings(retry_budget_seconds=2)
    tokens = MsalTokenProvider(settings, http_client=httpx.Client(transport=standin.transport()))
    client = GraphClient(
        settings, tokens, transport=httpx.MockTransport(refuse), sleep=sleeps.sleep, clock=sleeps.clock
    )
    with pytest.raises(Unavailable):
        await client.request("GET", "/users/x", operation="get_user")
    assert sleeps.calls  # retried within the budget first
    await client.aclose()


async def test_token_endpoint_unreachable_is_token_failure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    tokens = MsalTokenProvider(
        graph_settings(), http_client=httpx.Client(transport=httpx.MockTransport(refuse))
    )
    with pytest.raises(TokenFailure):
        await tokens.token()
    tokens.close()


def test_construction_does_no_io() -> None:
    def explode(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no I/O at construction")

    tokens = MsalTokenProvider(
        graph_settings(), http_client=httpx.Client(transport=httpx.MockTransport(explode))
    )
    GraphClient(graph_settings(), tokens, transport=httpx.MockTransport(explode))


def test_graph_package_imports_no_chat_sdk() -> None:
    import ast
    from pathlib import Path

    import bot.graph

    for path in Path(bot.graph.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            for name in names:
                assert not name.startswith(("slack_bolt", "slack_sdk", "microsoft_agents", "botbuilder")), (
                    path
                )
