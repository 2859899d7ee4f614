"""Fixtures for the hostile-input tests: the real classifier (loaded once) and real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from desk.ports import Classifier
from tests.servers import SmtpServer
from tests.servers.slack_api import SlackApi

CITY_USER = "UCITY01"
REVIEWERS = ["UREV1"]


@pytest.fixture(scope="session")
def classifier() -> Classifier:
    from nlp import load_classifier

    loaded: Classifier = load_classifier()
    return loaded


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()



@pytest.fixture
async def slack_api() -> AsyncIterator[SlackApi]:
    api = await SlackApi().start()
    api.add_user(CITY_USER, email="dana@fallriverma.org", name="Dana Cruz")
    for reviewer in REVIEWERS:
        api.add_user(reviewer, email=f"{reviewer.lower()}@network.test", name=reviewer)
    yield api
    await api.stop()
