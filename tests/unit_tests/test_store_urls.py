"""A store URL shown in errors and ``repr`` never carries a password, wherever the URL puts
it: in its user part, or as a query option redis-py reads (``?password=``)."""

from __future__ import annotations

import uuid

import pytest

from langroute._exceptions import BudgetStoreError, FeedbackStoreError
from langroute._urls import redacted
from langroute.budgets import open_store
from langroute.feedback import open_feedback_store


@pytest.mark.parametrize("url, shown", [
    ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://user:pw@h/0", "redis://user:***@h/0"),
    ("redis://user@h/0?password=pw&socket_timeout=5",
     "redis://user@h/0?password=***&socket_timeout=5"),
    ("rediss://h/0?ssl_password=pw", "rediss://h/0?ssl_password=***"),
    ("sqlite:///tmp/spend.db", "sqlite:///tmp/spend.db"),  # left as written
    ("memory://", "memory://"),
])
def test_redacted_hides_every_password(url, shown):
    assert redacted(url) == shown


@pytest.fixture
def user_and_secret(redis_url):
    import redis

    admin = redis.Redis.from_url(redis_url)
    user, secret = f"urls-{uuid.uuid4().hex[:8]}", f"pw{uuid.uuid4().hex}"
    admin.acl_setuser(user, enabled=True, passwords=[f"+{secret}"], keys=["*"],
                      commands=["+@all"])
    try:
        yield user, secret
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_a_password_given_as_a_query_option_is_never_shown(redis_url, user_and_secret):
    user, secret = user_and_secret
    host = redis_url.split("//", 1)[1].split("/", 1)[0]
    prefix = f"t{uuid.uuid4().hex}"
    spend_url = f"redis://{user}@{host}/0?password={secret}"
    store = open_store(spend_url)  # it reaches the server as that user
    assert secret not in repr(store)
    store.close()
    with pytest.raises(BudgetStoreError) as refused:
        open_store(spend_url.replace(secret, "wrong-" + secret))
    assert secret not in str(refused.value)

    feedback_url = f"redis://{user}@{host}/0?password={secret}&prefix={prefix}"
    with open_feedback_store(feedback_url) as feedback:
        assert secret not in repr(feedback)
    with pytest.raises(FeedbackStoreError) as refused:
        open_feedback_store(feedback_url.replace(secret, "wrong-" + secret))
    assert secret not in str(refused.value)
