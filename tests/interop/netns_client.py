"""List the tools of an MCP server with the official Python SDK, from inside a devbox namespace.

Usage: netns_client.py URL TOKEN    (trust from SSL_CERT_FILE). Prints the tool names, one per line.
"""
import asyncio
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url, token):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=20)
    async with Client(streamable_http_client(url, http_client=http)) as client:
        tools = await client.list_tools()
        for t in tools.tools:
            print(t.name)


asyncio.run(main(sys.argv[1], sys.argv[2]))
