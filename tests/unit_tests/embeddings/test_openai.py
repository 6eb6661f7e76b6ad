"""OpenAIEmbedder against a fake OpenAI server (httpx.MockTransport): no network, real SDK."""

from __future__ import annotations

import json

import httpx
import numpy as np
import openai
import pytest

from langroute import EmbeddingError
from langroute.embeddings import CACHE_ENV_VAR, OpenAIEmbedder


@pytest.fixture(autouse=True)
def _no_cache_env(monkeypatch):
    monkeypatch.delenv(CACHE_ENV_VAR, raising=False)


def vector_for(text: str, dim: int) -> list[float]:
    seed = sum(text.encode()) + len(text)
    return [float((seed * (k + 3)) % 17 + 1) for k in range(dim)]


class FakeOpenAI:
    """An embeddings endpoint that answers in shuffled order; ``failures`` are served first."""

    def __init__(self, dim=8, failures=(), answer=None):
        self.dim = dim
        self.requests: list[dict] = []
        self.failures = list(failures)
        self.answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/embeddings"
        body = json.loads(request.content)
        self.requests.append(body)
        if self.failures:
            return self.failures.pop(0)
        if self.answer is not None:
            return self.answer(body)
        data = [{"object": "embedding", "index": i, "embedding": vector_for(t, self.dim)}
                for i, t in enumerate(body["input"])]
        return httpx.Response(200, json={"object": "list", "model": body["model"],
                                         "data": data[::-1],
                                         "usage": {"prompt_tokens": 1, "total_tokens": 1}})

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(api_key="test", base_url="http://fake-openai.test/v1",
                             http_client=httpx.Client(transport=httpx.MockTransport(self)))


def make(server, **kwargs):
    waits: list[float] = []
    kwargs.setdefault("dimensions", server.dim)
    embedder = OpenAIEmbedder(client=server.client(), sleep=waits.append, **kwargs)
    return embedder, waits


def unit(rows):
    arr = np.asarray(rows, dtype=np.float32)
    return arr / np.linalg.norm(arr, axis=1, keepdims=True)


def test_batched_requests_in_order_by_index():
    server = FakeOpenAI()
    embedder, waits = make(server, batch_size=2)
    texts = ["alpha", "beta", "gamma", "alpha", "delta", "epsilon"]
    out = embedder.embed(texts)
    assert [r["input"] for r in server.requests] == [["alpha", "beta"], ["gamma", "delta"],
                                                     ["epsilon"]]
    assert all(r["model"] == "text-embedding-3-small" and r["dimensions"] == 8
               and r["encoding_format"] == "float" for r in server.requests)
    np.testing.assert_allclose(out, unit([vector_for(t, 8) for t in texts]), rtol=1e-6)
    assert out.dtype == np.float32 and waits == []
    embedder.embed(["beta", "alpha"])
    assert len(server.requests) == 3  # served from the cache


def test_known_models_need_no_dimensions_and_do_not_send_it():
    server = FakeOpenAI(dim=1536)
    embedder = OpenAIEmbedder(client=server.client())
    assert embedder.dimension == 1536 and embedder.embed(["x"]).shape == (1, 1536)
    assert "dimensions" not in server.requests[0]


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(429, json={"error": {"message": "slow down"}}),
        httpx.Response(500, json={"error": {"message": "oops"}}),
        httpx.Response(503, text="unavailable"),
    ],
    ids=["429", "500", "503"],
)
def test_rate_limits_and_server_errors_are_retried(failure):
    server = FakeOpenAI(failures=[failure, failure])
    embedder, waits = make(server, max_wait=5.0)
    out = embedder.embed(["hello"])
    assert len(server.requests) == 3 and len(waits) == 2
    assert all(0 < w <= 5.0 for w in waits)
    np.testing.assert_allclose(out, unit([vector_for("hello", 8)]), rtol=1e-6)


def test_retry_after_header_is_honoured():
    busy = httpx.Response(429, headers={"retry-after": "2.5"}, json={"error": {"message": "x"}})
    server = FakeOpenAI(failures=[busy])
    embedder, waits = make(server)
    embedder.embed(["hello"])
    assert waits == [2.5]


def test_gives_up_after_max_attempts_with_embedding_error():
    busy = httpx.Response(429, json={"error": {"message": "quota"}})
    server = FakeOpenAI(failures=[busy] * 10)
    embedder, waits = make(server, max_attempts=3)
    with pytest.raises(EmbeddingError, match="after 3 attempts") as info:
        embedder.embed(["hello"])
    assert isinstance(info.value.__cause__, openai.RateLimitError)
    assert len(server.requests) == 3 and len(waits) == 2


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_not_retried(status):
    server = FakeOpenAI(failures=[httpx.Response(status, json={"error": {"message": "no"}})])
    embedder, waits = make(server)
    with pytest.raises(EmbeddingError, match="request failed"):
        embedder.embed(["hello"])
    assert len(server.requests) == 1 and waits == []


def _data(body, mutate):
    data = [{"object": "embedding", "index": i, "embedding": vector_for(t, 8)}
            for i, t in enumerate(body["input"])]
    mutate(data)
    return httpx.Response(200, json={"object": "list", "model": "m", "data": data,
                                     "usage": {"prompt_tokens": 1, "total_tokens": 1}})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop(), "returned 1 embeddings for 2 texts"),
        (lambda d: d[1].update(index=0), "index 0 twice"),
        (lambda d: d[1].update(index=7), "bad index 7"),
        (lambda d: d[0].update(embedding=[1.0, 2.0]), "length 2 at index 0"),
        (lambda d: d[0].update(embedding=[0.0] * 8), "zero vector"),
        (lambda d: d[0].update(embedding=["a"] * 8), "non-numeric"),
    ],
)
def test_malformed_responses_raise_embedding_error(mutate, message):
    server = FakeOpenAI(answer=lambda body: _data(body, mutate))
    embedder, _ = make(server)
    with pytest.raises(EmbeddingError, match=message):
        embedder.embed(["one", "two"])


def test_empty_text_is_rejected_before_any_request():
    server = FakeOpenAI()
    embedder, _ = make(server)
    with pytest.raises(EmbeddingError, match="empty text"):
        embedder.embed(["fine", ""])
    assert server.requests == []


def test_missing_api_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(EmbeddingError, match="OPENAI_API_KEY"):
        OpenAIEmbedder().embed(["hello"])


def test_disk_cache_spares_paid_requests(tmp_path):
    server = FakeOpenAI()
    first, _ = make(server, cache_dir=tmp_path)
    vectors = first.embed(["a", "b"])
    second, _ = make(server, cache_dir=tmp_path)
    np.testing.assert_array_equal(second.embed(["b", "a"]), vectors[::-1])
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"model": "custom-embedder"}, {"dimensions": 0}, {"max_attempts": 0}, {"model": ""},
     {"max_wait": float("nan")}, {"max_wait": -1}, {"max_wait": "5"}],
)
def test_invalid_settings(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs)) if "max_wait" in kwargs else None):
        OpenAIEmbedder(**kwargs)


def test_warm_up_builds_the_client_without_a_request():
    server = FakeOpenAI()
    embedder, _ = make(server)
    assert embedder.warm_up() >= 0 and server.requests == []


def test_router_files_rebuild_openai_embedders_only_when_allowed(tmp_path):
    from langroute import Outcomes, RouterFileError, SWRouter, load_router

    server = FakeOpenAI()
    embedder, _ = make(server)
    prompts = ["add numbers", "write a poem", "name a capital", "prove a lemma"]
    data = Outcomes(ids=list("abcd"), prompts=prompts, models=("x", "y"),
                    scores=np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]),
                    costs=np.tile([0.01, 0.001], (4, 1)))
    path = tmp_path / "router.safetensors"
    SWRouter(embedder).fit(data).save(path)
    with pytest.raises(RouterFileError, match="allow_remote_embedder=True"):
        load_router(path)
    # Opting in: the file's spec is rebuilt (an SDK client from the environment) -- here the
    # caller's own client is passed instead, and its fingerprint checked with one request.
    before = len(server.requests)
    loaded = load_router(path, embedder=make(server)[0])
    assert len(server.requests) == before + 1 and loaded.models == ["x", "y"]


def test_allow_list_rebuilds_openai_specs_only_on_opt_in():
    from langroute import RouterFileError
    from langroute.embeddings import trusted_embedder

    spec = {"kind": "openai", "model": "text-embedding-3-large", "dimensions": 256}
    with pytest.raises(RouterFileError, match="remote API"):
        trusted_embedder(spec, source="f")
    rebuilt = trusted_embedder(spec, source="f", allow_remote=True)
    assert isinstance(rebuilt, OpenAIEmbedder)
    assert rebuilt.get_config() == {"model": "text-embedding-3-large", "dimensions": 256}
