"""Fixtures shared by every test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from carm.sandbox.moto import MotoServer
from tests.pki import Pki, make_pki


@pytest.fixture(scope="session")
def moto_process() -> Iterator[MotoServer]:
    """One moto server subprocess for the whole session (it starts in ~0.5 s)."""
    with MotoServer() as server:
        yield server


@pytest.fixture
def moto_server(moto_process: MotoServer) -> MotoServer:
    """The session's moto server, wiped before the test: no buckets, IAM checks off, and the
    controller user (account 000000000000) re-created with the same access key."""
    moto_process.reset()
    return moto_process


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate."""
    return make_pki(tmp_path_factory.mktemp("pki"))
