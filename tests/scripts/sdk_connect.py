"""The connect loop with the official MCP Python SDK against `airlock dev`.

Usage: python3 tests/scripts/sdk_connect.py URL DATA_DIR
(URL = airlock dev's base URL, DATA_DIR = its --data directory; the `airlock`
binary must be on PATH or in $AIRLOCK). Needs `pip install mcp` (which brings httpx2).

alice and bob (tenant acme, 2026-07-28) and carol (tenant globex, the
2025-11-25 handshake), each on a fresh data directory: call `list_events`; the SDK receives the URL elicitation (an input-required
result, or the -32042 error) and hands it to the elicitation callback, which
plays the user's browser: it opens airlock's connect page, logs in at the dev
issuer, consents at the Demo Calendar, and accepts. The retry must show the
user's own calendar.
"""

import asyncio
import os
import re
import subprocess
import sys
from urllib.parse import urljoin, urlparse, parse_qsl

import httpx2 as httpx
from mcp import types
from mcp.client import Client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError

BASE, DATA = sys.argv[1], sys.argv[2]
AIRLOCK = os.environ.get("AIRLOCK", "airlock")


def token(tenant, user):
    return subprocess.check_output(
        [AIRLOCK, "token", "--tenant", tenant, "--user", user, "--data", DATA], text=True
    ).strip()


async def browse(link, tenant, user):
    """Follow a connect link as `user`; returns the final page."""
    async with httpx.AsyncClient(follow_redirects=False) as http:
        method, url, form = "GET", link, None
        for _ in range(12):
            r = await http.request(method, url, data=form)
            if "location" in r.headers:
                method, url, form = "GET", urljoin(url, r.headers["location"]), None
                continue
            path = urlparse(url).path
            if path.endswith(f"/dev/{tenant}/authorize") and r.status_code == 200:
                # The login form: the request, the user, and the form's
                # one-time token (the client keeps the page's cookie).
                tok = re.search(r'name="form_token" value="([^"]+)"', r.text).group(1)
                form = dict(parse_qsl(urlparse(url).query)) | {"user": user, "form_token": tok}
                method = "POST"
            elif path.endswith("/dev/calendar/authorize") and r.status_code == 200:
                tok = re.search(r'name="form_token" value="([^"]+)"', r.text).group(1)
                method, url = "POST", f"{BASE}/dev/calendar/consent"
                form = {"form_token": tok, "account": user, "decision": "allow"}
            else:
                return r.status_code, r.text
    raise RuntimeError("the connect flow did not end")


async def run(mode, tenant, user):
    seen = []

    async def on_elicit(context, params):
        assert isinstance(params, types.ElicitRequestURLParams), params
        assert params.url.startswith(f"{BASE}/connect/{tenant}/"), params.url
        status, page = await browse(params.url, tenant, user)
        assert status == 200, page
        seen.append(params.url)
        return types.ElicitResult(action="accept")

    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token(tenant, user)}"})
    transport = streamable_http_client(f"{BASE}/mcp/{tenant}", http_client=http)
    async with Client(transport, mode=mode, elicitation_callback=on_elicit) as client:
        try:
            result = await client.call_tool("list_events", {})
        except MCPError as e:
            # 2025-11-25: a -32042 error carries the elicitations; the user
            # connects, the client retries.
            assert e.error.code == -32042, e.error
            required = UrlElicitationRequiredError.from_error(e.error)
            for elicitation in required.elicitations:
                await on_elicit(None, elicitation)
            result = await client.call_tool("list_events", {})
        assert not result.is_error, result
        owner = result.structured_content["owner"]
        assert owner == user, (owner, user)
        assert len(seen) == 1, "the user was asked to connect once"
        print(f"{mode:>10} {tenant}/{user}: elicited {len(seen)}x, then {result.content[0].text}")


async def main():
    # Each user connects once; carol (tenant globex) through the handshake era.
    await run("2026-07-28", "acme", "alice")
    await run("2026-07-28", "acme", "bob")
    await run("legacy", "globex", "carol")


asyncio.run(main())
