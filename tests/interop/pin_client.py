"""One long-lived Python SDK session, driven line by line from stdin, for the tool-pinning test: the
session stays open across the operator's approvals, as an agent's would.

Usage: pin_client.py URL TOKEN MODE   (MODE: legacy | auto; trust comes from SSL_CERT_FILE)
Commands (one per line), each answered with one JSON line:
  list                  -> {"tools": {name: description}}
  call NAME JSON_ARGS   -> {"text": ..., "is_error": bool} or {"error": message}
  wait_changed SECONDS  -> {"changed": bool}   (a tools/list_changed notification since the last wait)
"""
import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

URL, TOKEN, MODE = sys.argv[1:4]


async def main():
    changed = asyncio.Event()

    async def on_message(msg):
        if "ToolListChanged" in type(getattr(msg, "root", msg)).__name__:
            changed.set()

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    transport = streamable_http_client(URL, http_client=http)
    loop = asyncio.get_running_loop()
    async with Client(transport, mode=MODE, message_handler=on_message) as client:
        print(json.dumps({"ready": True}), flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            cmd, _, rest = line.strip().partition(" ")
            if cmd == "list":
                tools = await client.list_tools()
                out = {"tools": {t.name: t.description for t in tools.tools}}
            elif cmd == "call":
                name, _, args = rest.partition(" ")
                try:
                    r = await client.call_tool(name, json.loads(args or "{}"))
                    out = {"text": r.content[0].text if r.content else "", "is_error": bool(r.is_error)}
                except Exception as e:  # the SDK raises on a JSON-RPC error
                    out = {"error": str(e)}
            elif cmd == "wait_changed":
                try:
                    await asyncio.wait_for(changed.wait(), float(rest))
                    out = {"changed": True}
                except asyncio.TimeoutError:
                    out = {"changed": False}
                changed.clear()
            else:
                out = {"error": f"unknown command {cmd!r}"}
            print(json.dumps(out), flush=True)


asyncio.run(main())
