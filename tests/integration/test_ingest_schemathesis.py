"""schemathesis against ingest's OpenAPI on the real stack: no input may produce a 5xx
(broker/Redis-unavailable 503s are excluded by running with both up)."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import StackInfo
from tests.integration.servers import serve_ingest
from tests.integration.test_ingest import ADMIN, settings_for

pytestmark = pytest.mark.integration
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
async def ingest_url(stack: StackInfo) -> AsyncIterator[str]:
    async with serve_ingest(settings_for(stack)) as base:
        yield base


async def run_schemathesis(url: str, token: str, max_examples: int) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS), "run", f"{url}/openapi.json", "--url", url,
        "--checks", "not_a_server_error", "--max-examples", str(max_examples),
        "--header", f"Authorization: Bearer {token}", "--generation-deterministic",
        "--request-timeout", "20", "--no-color",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=400)
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.mark.parametrize("who", ["admin", "device"])
async def test_no_5xx_for_any_generated_request(ingest_url: str, who: str) -> None:
    token = ADMIN
    if who == "device":  # device "0": hypothesis' simplest stream id, so chunk handling is reached
        async with httpx.AsyncClient(base_url=ingest_url) as c:
            r = await c.post("/v1/admin/devices", json={"device_id": "0"}, headers={"Authorization": f"Bearer {ADMIN}"})
            token = r.json()["api_key"]
    code, out = await run_schemathesis(ingest_url, token, max_examples=40)
    assert code == 0, out[-6000:]
    generated = re.search(r"(\d+) generated", out)
    assert generated and int(generated.group(1)) > 100, out[-3000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", out)
    tested = re.search(r"Tested: (\d+)", out)
    assert selected and tested and int(tested.group(1)) == int(selected.group(2)) >= 10, out[-3000:]
