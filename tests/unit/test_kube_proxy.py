"""Which proxy the Kubernetes client uses (read once, as kubectl reads it)."""

from __future__ import annotations

import pytest

from carm.kube.client import _env_proxy_for


def test_proxy_comes_from_the_environment_unless_no_proxy_exempts_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,.internal")
    assert _env_proxy_for("https://api.example:6443") == "http://proxy.example:3128"
    assert _env_proxy_for("https://kube.internal:6443") is None
    assert _env_proxy_for("https://127.0.0.1:6443") is None
    assert _env_proxy_for("http://api.example:8080") is None  # no HTTP_PROXY set
