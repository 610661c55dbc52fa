"""A local stand-in for the Anthropic and OpenAI APIs, for tests (standard library only).

It demands the real key (Anthropic paths: `x-api-key`; OpenAI paths: `Authorization: Bearer`), answers
Messages and Chat Completions requests as JSON or as a stream in each provider's shape, and logs every
request it receives (method, path, headers, body) as one JSON line in LOG, so a test can check what
reached the upstream. Models with special names drive the tests: `slow-*` streams one event every 50 ms
and logs `cancelled` if the client goes away; `echo-key` puts the key into its reply; `rate-me` answers
429 with `retry-after`.

Usage: llm_upstream.py KEY LOG  (prints its port on the first line of stdout)
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY = sys.argv[1]
LOG = sys.argv[2]


def log(entry):
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without it a reused connection waits for the client's delayed ACK between head and body.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        if n:
            return self.rfile.read(n)
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def send(self, status, obj, headers=()):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self):
        log({"event": "request", "method": "HEAD", "path": self.path, "headers": dict(self.headers.items())})
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):
        self.handle_any(b"")

    def do_POST(self):
        self.handle_any(self.body())

    def handle_any(self, raw):
        headers = {k.lower(): v for k, v in self.headers.items()}
        log({"event": "request", "method": self.command, "path": self.path, "headers": headers,
             "body": raw.decode(errors="replace")})
        anthropic = self.path.startswith("/v1/messages")
        if anthropic:
            ok = headers.get("x-api-key") == KEY
        else:
            ok = headers.get("authorization") == f"Bearer {KEY}"
        if not ok:
            if anthropic:
                return self.send(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
            return self.send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})
        req = json.loads(raw or b"{}")
        model = req.get("model", "")
        if model == "rate-me":
            return self.send(429, {"error": {"message": "slow down", "type": "rate_limit_error"}}, [("retry-after", "7")])
        if anthropic:
            return self.messages(req, model)
        if self.path.startswith("/v1/chat/completions"):
            return self.chat(req, model)
        self.send(404, {"error": {"message": f"no route {self.path}"}})

    def text_for(self, model):
        if model == "echo-key":
            return f"your key is {KEY}"
        return "Hello from the fixture upstream."

    def stream(self, events):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            for name, data, pause in events:
                chunk = (f"event: {name}\n" if name else "") + f"data: {data}\n\n"
                b = chunk.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
                self.wfile.flush()
                if pause:
                    time.sleep(pause)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            log({"event": "stream_done", "path": self.path})
        except (BrokenPipeError, ConnectionResetError):
            log({"event": "cancelled", "path": self.path})
            self.close_connection = True

    def messages(self, req, model):
        text = self.text_for(model)
        usage_in = 11
        headers = [("request-id", KEY)] if model == "echo-key" else [("request-id", "req_fixture")]
        if not req.get("stream"):
            return self.send(200, {
                "id": "msg_fixture", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "usage": {"input_tokens": usage_in, "output_tokens": 5}}, headers)
        slow = model.startswith("slow")
        n = 100 if slow else int(req.get("max_tokens", 3)) if model.startswith("count") else 3
        pause = 0.05 if slow else 0
        ev = [("message_start", json.dumps({"type": "message_start", "message": {
            "id": "msg_fixture", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "usage": {"input_tokens": usage_in, "output_tokens": 1}}}), 0),
            ("content_block_start", json.dumps({"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "text", "text": ""}}), 0),
            ("ping", json.dumps({"type": "ping"}), 0)]
        pieces = [text] if not (slow or model.startswith("count")) else [f"t{i} " for i in range(n)]
        for p in pieces:
            ev.append(("content_block_delta", json.dumps({"type": "content_block_delta", "index": 0,
                                                          "delta": {"type": "text_delta", "text": p}}), pause))
        ev += [("content_block_stop", json.dumps({"type": "content_block_stop", "index": 0}), 0),
               ("message_delta", json.dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                             "usage": {"output_tokens": len(pieces) + 4}}), 0),
               ("message_stop", json.dumps({"type": "message_stop"}), 0)]
        self.stream(ev)

    def chat(self, req, model):
        text = self.text_for(model)
        if not req.get("stream"):
            return self.send(200, {
                "id": "chatcmpl-fixture", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}})
        chunks = []
        for i, p in enumerate([text[: len(text) // 2], text[len(text) // 2:]]):
            chunks.append((None, json.dumps({"id": "chatcmpl-fixture", "object": "chat.completion.chunk", "created": 0,
                                             "model": model, "choices": [{"index": 0, "delta": {"content": p},
                                                                          "finish_reason": None}]}), 0))
        if (req.get("stream_options") or {}).get("include_usage"):
            chunks.append((None, json.dumps({"id": "chatcmpl-fixture", "object": "chat.completion.chunk", "created": 0,
                                             "model": model, "choices": [],
                                             "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}), 0))
        chunks.append((None, "[DONE]", 0))
        self.stream(chunks)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
