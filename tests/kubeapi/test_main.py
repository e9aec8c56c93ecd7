"""`carm sandbox kubeapi`: serves in the foreground, writes a kubeconfig, exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import yaml


async def test_main_serves_until_terminated(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "carm.sandbox.kubeapi.main",
        "--port",
        "0",
        "--kubeconfig",
        str(kubeconfig),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        hint = (await asyncio.wait_for(process.stdout.readline(), 5)).decode()
        url = first.split()[-1]
        config = yaml.safe_load(kubeconfig.read_text())
        async with aiohttp.ClientSession() as session, session.get(f"{url}/version") as answer:
            version = await answer.json()
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 10)

    assert f"export KUBECONFIG={kubeconfig}" in hint
    assert config["current-context"] == "carm-sandbox"
    assert config["clusters"][0]["cluster"]["server"] == url
    assert config["contexts"][0]["context"]["namespace"] == "default"
    assert version["major"] == "1"
    assert code == 0
