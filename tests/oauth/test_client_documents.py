"""Client metadata documents are fetched with care: never from this server's own network unless
allowed, and only when the document is the client it claims to be."""

from __future__ import annotations

import pytest

from doable.oauth.client_documents import ClientDocumentError, ClientDocuments
from tests.oauth.conftest import DocumentHost, TlsFiles


def document(url: str, **over: object) -> dict[str, object]:
    return {"client_id": url, "client_name": "c", "redirect_uris": ["https://c.example/cb"], **over}


async def test_a_document_on_a_private_or_loopback_host_is_not_fetched(document_host: DocumentHost) -> None:
    url = document_host.publish("private.json", document(f"{document_host.base}/private.json"))
    documents = ClientDocuments(allow_private=False)
    try:
        with pytest.raises(ClientDocumentError, match="private or loopback"):
            await documents.client(url)
        with pytest.raises(ClientDocumentError, match="private or loopback"):
            await documents.client("https://169.254.169.254/latest/meta-data.json")
    finally:
        await documents.aclose()
    assert "/private.json" not in document_host.fetches


@pytest.mark.parametrize(
    ("name", "override", "reason"),
    [
        ("impostor.json", {"client_id": "https://someone-else.example/client.json"}, "names another client_id"),
        ("secret.json", {"token_endpoint_auth_method": "client_secret_post"}, "must be none"),
        ("no-redirects.json", {"redirect_uris": []}, "lacks client_name or redirect_uris"),
    ],
)
async def test_a_document_that_is_not_the_client_it_claims_is_refused(
    document_host: DocumentHost, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch, name: str, override: dict[str, object], reason: str
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))  # the test host's certificate authority
    url = document_host.publish(name, document(f"{document_host.base}/{name}", **override))
    documents = ClientDocuments(allow_private=True)
    try:
        with pytest.raises(ClientDocumentError, match=reason):
            await documents.client(url)
    finally:
        await documents.aclose()
