"""The five new upstream settings and the AWS region (SPEC: More providers)."""

from __future__ import annotations

import pytest

from llm_cache.config import Config
from llm_cache.providers import bedrock


def make(**env: str) -> Config:
    return Config(env=env, dotenv_path=None)


def test_defaults() -> None:
    c = make()
    assert c.gemini_base_url == "https://generativelanguage.googleapis.com"
    assert c.ollama_base_url == "http://127.0.0.1:11434"
    assert c.cohere_base_url == "https://api.cohere.com"
    assert c.azure_openai_base_url is None  # no default resource: Azure is off until set
    assert c.bedrock_base_url is None and c.aws_region is None  # no region: Bedrock is off


def test_environment_and_trailing_slashes() -> None:
    c = make(
        LLM_CACHE_GEMINI_BASE_URL="http://g.local/",
        LLM_CACHE_OLLAMA_BASE_URL="http://gpu-box:11434",
        LLM_CACHE_COHERE_BASE_URL="https://co.example",
        LLM_CACHE_AZURE_OPENAI_BASE_URL="https://res.openai.azure.com/",
        LLM_CACHE_BEDROCK_BASE_URL="https://bedrock-runtime.eu-west-1.amazonaws.com",
    )
    assert c.gemini_base_url == "http://g.local"
    assert c.ollama_base_url == "http://gpu-box:11434"
    assert c.cohere_base_url == "https://co.example"
    assert c.azure_openai_base_url == "https://res.openai.azure.com"
    assert c.bedrock_base_url == "https://bedrock-runtime.eu-west-1.amazonaws.com"


def test_region_gives_the_bedrock_url_and_falls_back_to_aws_settings() -> None:
    c = make(LLM_CACHE_AWS_REGION="eu-central-1", AWS_REGION="us-west-2")
    assert c.aws_region == "eu-central-1"
    assert c.bedrock_base_url == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    assert make(AWS_REGION="us-west-2").aws_region == "us-west-2"
    assert make(AWS_DEFAULT_REGION="ap-south-1").aws_region == "ap-south-1"
    explicit = make(LLM_CACHE_AWS_REGION="us-east-1", LLM_CACHE_BEDROCK_BASE_URL="http://x:1")
    assert explicit.bedrock_base_url == "http://x:1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LLM_CACHE_GEMINI_BASE_URL", "ftp://x"),
        ("LLM_CACHE_OLLAMA_BASE_URL", "localhost:11434"),
        ("LLM_CACHE_COHERE_BASE_URL", "nope"),
        ("LLM_CACHE_AZURE_OPENAI_BASE_URL", "res.openai.azure.com"),
        ("LLM_CACHE_BEDROCK_BASE_URL", "//x"),
        ("LLM_CACHE_AWS_REGION", "us east 1"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        make(**{name: value})


def test_bedrock_region_from_the_upstream_url() -> None:
    assert (
        bedrock._region_of("https://bedrock-runtime.eu-west-3.amazonaws.com/model/m/converse")
        == "eu-west-3"
    )
    assert (
        bedrock._region_of("https://bedrock-runtime-fips.us-east-1.amazonaws.com/x") == "us-east-1"
    )
    assert bedrock._region_of("http://127.0.0.1:9000/model/m/converse") is None


def test_to_dict_lists_the_new_settings() -> None:
    d = make(LLM_CACHE_AWS_REGION="us-east-1").to_dict()
    for name in ("gemini_base_url", "ollama_base_url", "cohere_base_url", "azure_openai_base_url"):
        assert name in d
    assert d["bedrock_base_url"] == "https://bedrock-runtime.us-east-1.amazonaws.com"
