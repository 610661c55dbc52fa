"""Drive the hub with the official Python SDK client, as an agent would.

Usage: client.py URL TOKEN MODE HIDDEN_TOOL   (MODE: legacy | auto; trust comes from SSL_CERT_FILE)
Prints one JSON object: the tools listed, an allowed call's text, the hidden call's error, the progress
notifications seen, and whether a tools/list_changed notification arrived.
"""
import asyncio
import json
import sys

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

URL, TOKEN, MODE, HIDDEN = sys.argv[1:5]


async def main():
    out = {"progress": [], "list_changed": False}
    changed = asyncio.Event()

    async def on_message(msg):
        if isinstance(msg, types.ServerNotification) and isinstance(msg.root if hasattr(msg, "root") else msg, types.ToolListChangedNotification):
            out["list_changed"] = True
            changed.set()
        elif "ToolListChanged" in type(getattr(msg, "root", msg)).__name__:
            out["list_changed"] = True
            changed.set()

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    transport = streamable_http_client(URL, http_client=http)
    async with Client(transport, mode=MODE, message_handler=on_message) as client:
        tools = await client.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)
        r = await client.call_tool("github.get_issue", {"number": 7})
        out["call"] = r.content[0].text

        async def on_progress(progress, total, message):
            out["progress"].append([progress, total])

        r = await client.call_tool("github.get_progress", {"steps": 3}, progress_callback=on_progress)
        out["progress_result"] = r.content[0].text
        try:
            r = await client.call_tool(HIDDEN, {})
            out["hidden"] = {"is_error": r.is_error, "text": r.content[0].text if r.content else ""}
        except Exception as e:  # the SDK raises on a JSON-RPC error
            out["hidden"] = {"error": str(e)}
        if MODE == "legacy":
            await client.call_tool("github.get_changes", {})
            try:
                await asyncio.wait_for(changed.wait(), 5)
            except asyncio.TimeoutError:
                pass
    print(json.dumps(out))


asyncio.run(main())
