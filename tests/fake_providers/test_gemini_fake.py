"""The simulated Gemini API speaks the real wire format: google-genai reads it, pointed directly."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
from google import genai
from google.genai import errors, types

from tests.fake_providers.gemini import GeminiFake, create_gemini_fake
from tests.servers import run_server

MODEL = "gemini-2.5-flash"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[GeminiFake, str]]:
    fake = create_gemini_fake()
    with run_server(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(server: tuple[GeminiFake, str]) -> GeminiFake:
    server[0].reset()
    return server[0]


@pytest.fixture
def url(server: tuple[GeminiFake, str], fake: GeminiFake) -> str:
    return server[1]


@pytest.fixture
def client(url: str) -> genai.Client:
    return genai.Client(
        api_key="AIza-test-key",
        http_options=types.HttpOptions(
            base_url=url, retry_options=types.HttpRetryOptions(attempts=1)
        ),
    )


def test_generate_content(client: genai.Client, fake: GeminiFake) -> None:
    r = client.models.generate_content(model=MODEL, contents="What is the capital of France?")
    assert r.text is not None and "[h=" in r.text and "capital of France" in r.text
    assert r.candidates and r.candidates[0].finish_reason == types.FinishReason.STOP
    assert r.usage_metadata and r.usage_metadata.total_token_count
    assert r.response_id and r.model_version == MODEL
    req = fake.last_request
    assert req.path in (
        f"/v1/models/{MODEL}:generateContent",
        f"/v1beta/models/{MODEL}:generateContent",
    )
    assert req.headers["x-goog-api-key"] == "AIza-test-key"
    again = client.models.generate_content(model=MODEL, contents="What is the capital of France?")
    assert again.text == r.text and again.response_id != r.response_id  # unique per call
    other = client.models.generate_content(
        model="gemini-2.5-pro", contents="What is the capital of France?"
    )
    assert other.text != r.text  # the model in the path changes the answer
    cfg = types.GenerateContentConfig(temperature=0.5)
    hotter = client.models.generate_content(
        model=MODEL, contents="What is the capital of France?", config=cfg
    )
    assert hotter.text != r.text  # so does every body field


def test_stream_matches_the_full_answer(client: genai.Client, fake: GeminiFake) -> None:
    full = client.models.generate_content(model=MODEL, contents="Tell me a story")
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Tell me a story"))
    assert len(chunks) > 1
    assert "".join(c.text or "" for c in chunks) == full.text  # stream hash == non-stream hash
    assert (
        chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    )
    assert chunks[-1].usage_metadata and chunks[-1].usage_metadata.candidates_token_count
    assert len({c.response_id for c in chunks}) == 1
    assert fake.last_request.query == {"alt": "sse"}
    assert fake.last_request.path.endswith(":streamGenerateContent")


async def test_async_stream(client: genai.Client) -> None:
    text = ""
    async for chunk in await client.aio.models.generate_content_stream(model=MODEL, contents="hi"):
        text += chunk.text or ""
    assert "[h=" in text


def test_max_tokens_candidates_and_tools(client: genai.Client) -> None:
    r = client.models.generate_content(
        model=MODEL,
        contents="Say a lot",
        config=types.GenerateContentConfig(max_output_tokens=3, candidate_count=2),
    )
    assert r.candidates and len(r.candidates) == 2
    assert r.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather",
                parameters=types.Schema(
                    type=types.Type.OBJECT,
                    properties={"city": types.Schema(type=types.Type.STRING)},
                ),
            )
        ]
    )
    r = client.models.generate_content(
        model=MODEL,
        contents="Weather in Paris?",
        config=types.GenerateContentConfig(
            tools=[tool],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )
    assert r.function_calls and r.function_calls[0].name == "get_weather"
    assert str((r.function_calls[0].args or {})["city"]).startswith("city-")


def test_embeddings_batch_via_sdk_and_single_via_rest(
    client: genai.Client, url: str, fake: GeminiFake
) -> None:
    r = client.models.embed_content(model="gemini-embedding-001", contents=["a", "b"])
    assert r.embeddings and len(r.embeddings) == 2
    assert r.embeddings[0].values != r.embeddings[1].values
    assert fake.last_request.path.endswith(":batchEmbedContents")
    first = fake.last_request.body["requests"][0]
    assert first["model"] == "models/gemini-embedding-001"
    single = httpx2.post(
        f"{url}/v1beta/models/gemini-embedding-001:embedContent?key=AIza-q",
        json={"content": first["content"]},
    )
    assert single.status_code == 200
    assert single.json()["embedding"]["values"] == r.embeddings[0].values


def test_errors_in_gemini_shape(client: genai.Client, url: str, fake: GeminiFake) -> None:
    fake.status = 429
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=MODEL, contents="hi")
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    fake.status = None
    no_key = httpx2.post(
        f"{url}/v1beta/models/{MODEL}:generateContent",
        json={"contents": [{"parts": [{"text": "x"}]}]},
    )
    assert no_key.status_code == 403
    assert no_key.json()["error"]["status"] == "PERMISSION_DENIED"
    bad = httpx2.post(f"{url}/v1beta/models/{MODEL}:generateContent?key=k", content=b"{nope")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == 400


def test_stream_knobs(client: genai.Client, url: str, fake: GeminiFake) -> None:
    fake.error_after = 1
    with pytest.raises(errors.APIError):
        list(client.models.generate_content_stream(model=MODEL, contents="Tell me a story"))
    fake.error_after = None
    fake.abort_after = 1
    with pytest.raises(Exception):  # noqa: B017 - the SDK surfaces httpx's own read error
        list(client.models.generate_content_stream(model=MODEL, contents="Tell me a story"))


def test_json_array_stream_without_alt_sse(url: str) -> None:
    r = httpx2.post(
        f"{url}/v1/models/{MODEL}:streamGenerateContent",
        headers={"x-goog-api-key": "k"},
        json={"contents": [{"role": "user", "parts": [{"text": "Tell me a story"}]}]},
    )
    chunks = r.json()
    assert isinstance(chunks, list) and len(chunks) > 1
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
