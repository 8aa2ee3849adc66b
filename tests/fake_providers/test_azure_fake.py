"""The simulated Azure OpenAI resource speaks Azure's wire format: openai.AzureOpenAI reads it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import openai
import pytest

from tests.fake_providers.azure import AzureFake
from tests.servers import run_server

CHAT = [{"role": "user", "content": "What is the capital of France?"}]
API_VERSION = "2024-10-21"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[AzureFake, str]]:
    fake = AzureFake()
    with run_server(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(server: tuple[AzureFake, str]) -> AzureFake:
    server[0].reset()
    return server[0]


@pytest.fixture
def url(server: tuple[AzureFake, str], fake: AzureFake) -> str:
    return server[1]


@pytest.fixture
def client(url: str) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=url, api_version=API_VERSION, api_key="azure-key", max_retries=0
    )


def test_chat_via_deployment_route(client: openai.AzureOpenAI, fake: AzureFake) -> None:
    r = client.chat.completions.create(model="my-gpt4o", messages=CHAT)  # type: ignore[arg-type]
    text = r.choices[0].message.content
    assert text and "[h=" in text
    req = fake.last_request
    assert req.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert req.query == f"api-version={API_VERSION}"
    assert req.headers["api-key"] == "azure-key"
    assert r.model_extra and "prompt_filter_results" in r.model_extra
    again = client.chat.completions.create(model="my-gpt4o", messages=CHAT)  # type: ignore[arg-type]
    assert again.choices[0].message.content == text and again.id != r.id
    other = client.chat.completions.create(model="other-deployment", messages=CHAT)  # type: ignore[arg-type]
    assert other.choices[0].message.content != text  # the deployment changes the answer
    older = openai.AzureOpenAI(
        azure_endpoint=str(client.base_url).split("/openai")[0],
        api_version="2024-02-01",
        api_key="azure-key",
    )
    changed = older.chat.completions.create(model="my-gpt4o", messages=CHAT)  # type: ignore[arg-type]
    assert changed.choices[0].message.content != text  # and so does the api-version


def test_stream_starts_with_the_filter_chunk(client: openai.AzureOpenAI) -> None:
    full = client.chat.completions.create(model="my-gpt4o", messages=CHAT)  # type: ignore[arg-type]
    chunks = list(client.chat.completions.create(model="my-gpt4o", messages=CHAT, stream=True))  # type: ignore[arg-type]
    assert chunks[0].choices == [] and chunks[0].model_extra
    assert "prompt_filter_results" in chunks[0].model_extra
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    with client.chat.completions.stream(model="my-gpt4o", messages=CHAT) as stream:  # type: ignore[arg-type]
        final = stream.get_final_completion()
    assert final.choices[0].message.content == text


def test_embeddings_and_v1_route(url: str, client: openai.AzureOpenAI, fake: AzureFake) -> None:
    e = client.embeddings.create(model="my-embedder", input=["a", "b"])
    assert len(e.data) == 2
    v1 = openai.OpenAI(
        base_url=f"{url}/openai/v1",
        api_key="azure-key",
        max_retries=0,
        default_headers={"api-key": "azure-key"},
    )
    r = v1.chat.completions.create(model="my-gpt4o", messages=CHAT)  # type: ignore[arg-type]
    assert r.choices[0].message.content and fake.last_request.path == "/openai/v1/chat/completions"


def test_errors_in_azure_shape(url: str, client: openai.AzureOpenAI, fake: AzureFake) -> None:
    fake.status = 429
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="my-gpt4o", messages=CHAT)  # type: ignore[arg-type]
    assert info.value.code == "429"
    assert info.value.response.headers["retry-after"] == "7"
    fake.status = None
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="missing-deployment", messages=CHAT)  # type: ignore[arg-type]
    assert nf.value.code == "DeploymentNotFound"
    no_version = httpx2.post(
        f"{url}/openai/deployments/d/chat/completions",
        headers={"api-key": "k"},
        json={"messages": CHAT},
    )
    assert no_version.status_code == 404
    assert no_version.json() == {"error": {"code": "404", "message": "Resource not found"}}
    no_key = httpx2.post(
        f"{url}/openai/deployments/d/chat/completions?api-version={API_VERSION}",
        json={"messages": CHAT},
    )
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "401"
