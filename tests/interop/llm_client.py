"""The official Anthropic and OpenAI Python SDKs calling through the hub's agent gateway, as an agent in a
devbox would: base URL and key from `mcp-hub devbox env`, the hub's CA from SSL_CERT_FILE.

Usage: llm_client.py ANTHROPIC_URL ANTHROPIC_TOKEN OPENAI_URL OPENAI_TOKEN
Prints one JSON object with what each call returned.
"""

import json
import sys

import anthropic
import openai

a_url, a_key, o_url, o_key = sys.argv[1:5]
out = {}

a = anthropic.Anthropic(base_url=a_url, api_key=a_key, max_retries=0)
msg = a.messages.create(model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
out["anthropic_json"] = {"text": msg.content[0].text, "input_tokens": msg.usage.input_tokens}

with a.messages.stream(model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "hi"}]) as s:
    out["anthropic_stream"] = {"text": s.get_final_text(), "events": 0}

# A client that gives up on a long stream: the hub must cancel the upstream request.
with a.messages.stream(model="slow-claude", max_tokens=16, messages=[{"role": "user", "content": "hi"}]) as s:
    for ev in s:
        if ev.type == "content_block_delta":
            break
out["anthropic_cancelled"] = True

try:
    a.messages.create(model="rate-me", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
except anthropic.RateLimitError as e:
    out["anthropic_429"] = {"status": e.status_code, "retry_after": e.response.headers.get("retry-after")}

bad = anthropic.Anthropic(base_url=a_url, api_key="gwh_not-a-token", max_retries=0)
try:
    bad.messages.create(model="claude-test", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
except anthropic.AuthenticationError as e:
    out["anthropic_401"] = {"status": e.status_code, "type": e.body["error"]["type"]}

o = openai.OpenAI(base_url=o_url, api_key=o_key, max_retries=0)
c = o.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
out["openai_json"] = {"text": c.choices[0].message.content, "total_tokens": c.usage.total_tokens}

text = ""
usage = None
for chunk in o.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}],
                                       stream=True, stream_options={"include_usage": True}):
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        usage = chunk.usage.total_tokens
out["openai_stream"] = {"text": text, "total_tokens": usage}

print(json.dumps(out))
