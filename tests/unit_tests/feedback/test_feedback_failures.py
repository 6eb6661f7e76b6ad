"""What a failure while recording feedback leaves behind: nothing stored, or a store that is
safe to retry against."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from langroute import KNNRouter, SWRouter
from langroute._exceptions import RouterConfigError
from langroute.embeddings import HashingEmbedder
from langroute.feedback import (
    DecisionRecord,
    open_feedback_store,
    record_feedback,
    record_preference,
    replay,
)
from langroute.routers._calibration_scores import calibration_scores_disabled

from ..routers.synthetic import MODELS, math_prompt, poem_prompt, split_outcomes

ROUTERS = {"sw": lambda e: SWRouter(e), "knn": lambda e: KNNRouter(e, k=5)}


@pytest.fixture(autouse=True)
def _no_calibration_refits():
    with calibration_scores_disabled():
        yield


class FlakyEmbedder(HashingEmbedder):
    """A remote embedding service stand-in: fails while ``down`` is set."""

    down = False

    def _embed_batch(self, texts):
        if self.down:
            raise ConnectionError("embedding service unreachable")
        return super()._embed_batch(texts)


@pytest.mark.parametrize("name", sorted(ROUTERS))
@pytest.mark.parametrize("kind", ["score", "preference"])
def test_an_embedder_failure_stores_nothing_so_a_retry_is_learned_once(name, kind):
    """A feedback service whose router never routed the prompt embeds it to learn: that used
    to run after the event was stored, so an embedder failure raised with the event stored,
    and the caller's retry stored it again (two events, learned twice by every replay)."""
    embedder = FlakyEmbedder(dimension=128, cache_dir=False)
    train = split_outcomes(20, seed=4)
    router = ROUTERS[name](embedder).fit(train)
    store = open_feedback_store("memory://")
    store.record_decision(DecisionRecord("d0", poem_prompt(900), "cheap", MODELS))

    def give() -> None:
        if kind == "score":
            record_feedback(store, "d0", score=0.0, router=router)
        else:
            record_preference(store, "d0", preferred="poet", router=router)

    embedder.down = True
    version = router.fit_version_
    with pytest.raises(ConnectionError):
        give()
    assert store.events() == [] and router.fit_version_ == version  # nothing recorded
    embedder.down = False
    give()  # the caller retries
    assert len(store.events()) == 1 and len(router.learned_feedback_) == 1
    fresh = ROUTERS[name](HashingEmbedder(dimension=128, cache_dir=False)).fit(train)
    assert replay(store, fresh) == 1
    queries = [poem_prompt(900), poem_prompt(901)]
    np.testing.assert_allclose(fresh.win_matrices(queries), router.win_matrices(queries))


def test_a_redis_urls_client_options_reach_the_client(redis_url):
    """Every query option but prefix used to be dropped: socket_timeout (a store call that
    hangs forever on a partitioned network), ssl_cert_reqs (TLS to a managed Redis), ..."""
    prefix = f"t{uuid.uuid4().hex}"
    url = f"{redis_url}?prefix={prefix}&client_name=feedback-job&socket_timeout=7"
    with open_feedback_store(url) as store:
        assert store.prefix == prefix
        assert store._client.client_getname() == "feedback-job"
        assert store._client.connection_pool.connection_kwargs["socket_timeout"] == 7.0
        store.record_decision(DecisionRecord("d0", "a prompt", "cheap", MODELS))
        assert store._client.exists(f"{prefix}:decision:d0")


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_a_quiz_longer_than_the_disagreements_still_spreads_over_the_prompts(name):
    """Once the prompts the models disagree on were picked, the rest of the quiz used to be
    the first exemplars in training order (every gain was 0): here, maths prompts only."""
    from langroute import Outcomes

    maths = [math_prompt(i) for i in range(20)]
    poems = [poem_prompt(i) for i in range(20)]
    split = [math_prompt(100), poem_prompt(100)]  # the only prompts the models disagree on
    prompts = [*maths, *poems, *split]
    scores = np.ones((len(prompts), 2))
    scores[-2:, 1] = 0.0
    data = Outcomes(ids=[f"p{i}" for i in range(len(prompts))], prompts=prompts,
                    models=("a", "b"), scores=scores, costs=np.full(scores.shape, 1e-3))
    router = ROUTERS[name](HashingEmbedder(dimension=128, cache_dir=False)).fit(data)
    quiz = router.quiz_prompts(8, prompts=prompts)
    assert set(quiz[:2]) == set(split)  # the informative ones first
    assert len(set(quiz)) == 8
    assert any(p in poems for p in quiz[2:]) and any(p in maths for p in quiz[2:])


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_numpy_numbers_are_quiz_sizes_costs_and_refit_limits(name):
    """A count or price computed with numpy used to be refused as "not an int / number"."""
    from langroute.feedback import RefitEvery, RefitState

    data = split_outcomes(20, seed=3)
    router = ROUTERS[name](HashingEmbedder(dimension=128, cache_dir=False)).fit(
        data.select_models(["cheap", "calc"]))
    rows = router.quiz_prompts(np.int64(6))
    assert len(rows) == 6 and rows.tolist() == router.quiz_prompts(6).tolist()
    router.add_model("poet", data.subset(rows), cost=np.float32(0.02))
    assert router.costs_[2] == pytest.approx(0.02)
    due = RefitEvery(events=np.int64(5), share=np.float32(0.5))
    assert due(RefitState(new_events=5, seconds=0.0, n_training=100))
    for bad in (np.float64(2.5), np.bool_(True), np.int64(0)):
        with pytest.raises(RouterConfigError, match="RefitEvery events"):
            RefitEvery(events=bad)
    for bad in (np.bool_(True), np.int64(0)):
        with pytest.raises(RouterConfigError, match="n must be"):
            router.quiz_prompts(bad)


def test_a_redis_stores_errors_and_repr_never_show_its_password(redis_url):
    """The store's URL is in its errors (an unknown decision id, which a feedback endpoint
    may echo to its caller) and repr (logs); it used to carry the password."""
    import redis

    from langroute._exceptions import FeedbackStoreError, UnknownDecisionError

    admin = redis.Redis.from_url(redis_url)
    user, secret = f"feedback-{uuid.uuid4().hex[:8]}", f"pw{uuid.uuid4().hex}"
    admin.acl_setuser(user, enabled=True, passwords=[f"+{secret}"], keys=["*"],
                      commands=["+@all"])
    try:
        host = redis_url.split("//", 1)[1]
        url = f"redis://{user}:{secret}@{host}?prefix=t{uuid.uuid4().hex}"
        with open_feedback_store(url) as store:
            assert secret not in repr(store) and user in repr(store)
            with pytest.raises(UnknownDecisionError) as unknown:
                store.decision("nope")
            assert secret not in str(unknown.value)
        with pytest.raises(FeedbackStoreError) as refused:
            open_feedback_store(url.replace(secret, "wrong-" + secret))
        assert secret not in str(refused.value)
    finally:
        admin.acl_deluser(user)
        admin.close()


@pytest.mark.parametrize("name", ["sw", "knn"])
def test_a_router_failing_to_learn_a_stored_event_says_it_was_stored(name, monkeypatch):
    """partial_fit failing after the event was stored (out of memory, say) used to raise its
    own error, which reads as "not recorded": a caller retrying stored the event twice."""
    from langroute._exceptions import RefitError

    train = split_outcomes(20, seed=4)
    router = ROUTERS[name](HashingEmbedder(dimension=128, cache_dir=False)).fit(train)
    store = open_feedback_store("memory://")
    store.record_decision(DecisionRecord("d0", poem_prompt(900), "cheap", MODELS))

    def out_of_memory(*args, **kwargs):
        raise MemoryError("no room for the new exemplar")

    monkeypatch.setattr(type(router), "partial_fit", out_of_memory)
    with pytest.raises(RefitError, match="was stored.*do not record it again") as raised:
        record_feedback(store, "d0", score=0.0, router=router)
    assert isinstance(raised.value.__cause__, MemoryError)
    assert store.events() == [raised.value.event]  # stored once; the error carries it
    monkeypatch.undo()
    fresh = ROUTERS[name](HashingEmbedder(dimension=128, cache_dir=False)).fit(train)
    replay(store, fresh)  # a replay teaches it
    assert list(fresh.learned_feedback_) == [raised.value.event.fingerprint]
