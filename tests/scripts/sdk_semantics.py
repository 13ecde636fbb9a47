"""Tool semantics (contract 0.2.0) with the official MCP Python SDK against `airlock dev`.

Usage: python3 tests/scripts/sdk_semantics.py URL DATA_DIR
(URL = airlock dev's base URL, DATA_DIR = its --data directory; the `airlock`
binary must be on PATH or in $AIRLOCK). Needs `pip install mcp`.

For each protocol era (2026-07-28: input-required results with a sealed
requestState, which the SDK echoes; 2025-11-25: the host asks within the
call), alice adds a note and calls `delete_note`:
- the SDK's elicitation callback declines: the note is kept;
- it accepts with confirm=true: the note is deleted, and gone from the list;
- with a log level asked (`log_level` on every 2026-07-28 request,
  `logging/setLevel` on the 2025-11-25 session), the tool's "kept" log line
  reaches the logging callback.
"""

import asyncio
import os
import subprocess
import sys

from mcp import types
from mcp.client import Client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

BASE, DATA = sys.argv[1], sys.argv[2]
AIRLOCK = os.environ.get("AIRLOCK", "airlock")


def token(tenant, user):
    return subprocess.check_output(
        [AIRLOCK, "token", "--tenant", tenant, "--user", user, "--data", DATA], text=True
    ).strip()


async def run(mode):
    decision = {"action": "decline"}
    asked = []
    logs = []

    async def on_elicit(context, params):
        assert isinstance(params, types.ElicitRequestFormParams), params
        assert "confirm" in params.requested_schema["properties"], params
        asked.append(params.message)
        if decision["action"] == "accept":
            return types.ElicitResult(action="accept", content={"confirm": True})
        return types.ElicitResult(action=decision["action"])

    async def on_log(params):
        logs.append(params)

    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token('acme', 'alice')}"})
    transport = streamable_http_client(f"{BASE}/mcp/acme", http_client=http)
    async with Client(
        transport,
        mode=mode,
        elicitation_callback=on_elicit,
        logging_callback=on_log,
        log_level="info",
    ) as client:
        if mode == "legacy":
            await client.set_logging_level("info")
        added = await client.call_tool("add_note", {"text": f"buy milk ({mode})"})
        assert not added.is_error, added
        note = added.structured_content["id"]

        kept = await client.call_tool("delete_note", {"id": note})
        assert not kept.is_error, kept
        assert kept.content[0].text.startswith(f"kept note {note}"), kept
        assert len(asked) == 1 and "buy milk" in asked[0], asked

        decision["action"] = "accept"
        deleted = await client.call_tool("delete_note", {"id": note})
        assert not deleted.is_error, deleted
        assert deleted.content[0].text == f"deleted note {note}", deleted
        listed = await client.call_tool("list_notes", {})
        assert all(n["id"] != note for n in listed.structured_content["notes"]), listed
        await asyncio.sleep(0.3)
        texts = [str(l.data) for l in logs]
        assert any("kept" in t for t in texts), texts
        print(f"{mode:>10}: asked {len(asked)}x; declined -> kept, confirmed -> deleted; {len(logs)} log lines forwarded")


async def main():
    await run("2026-07-28")
    await run("legacy")


asyncio.run(main())
