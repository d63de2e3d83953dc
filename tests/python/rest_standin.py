"""A stand-in for a custom REST API and its OAuth token endpoint, on
Python's own http.server (written by others, not by the gateway's authors).

Every request to a path other than /token is recorded in OUT as
<n>.json (time, method, path, lower-case headers, body) in arrival order. The answer is the
next one scripted for the path in SCRIPT (a JSON object: path -> list of
[status, {headers}, body]), then 201 {"id": "R-<n>", "status": "queued"}.

Authentication, when asked for: --api-key NAME=VALUE requires that header;
--client ID:SECRET serves client-credentials tokens at /token and requires
`Authorization: Bearer <a token it issued>`; a missing or wrong credential
is answered 401 and recorded like any other request.

As an identity provider: --introspect ID:SECRET serves OAuth 2.0 token
introspection (RFC 7662) at /introspect to a caller presenting ID:SECRET
in HTTP Basic; the tokens given as --active TOKEN=SCOPE are active (issuer
https://idp.example, audience ecko) until revoked at /revoke (RFC 7009,
form field `token`). Neither path is recorded.

The port it listens on is written to OUT/port once it listens.
"""

import argparse
import base64
import json
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--script", default=None)
parser.add_argument("--api-key", default=None)
parser.add_argument("--client", default=None)
parser.add_argument("--introspect", default=None)
parser.add_argument("--active", action="append", default=[])
args = parser.parse_args()

os.makedirs(args.out, exist_ok=True)
script = {}
if args.script:
    with open(args.script) as f:
        script = json.load(f)
lock = threading.Lock()
count = [0]
tokens = set()
active = dict(a.split("=", 1) for a in args.active)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, headers, body):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n).decode("utf-8", "replace")

    def token(self):
        form = urllib.parse.parse_qs(self.body())
        cid, secret = args.client.split(":", 1)
        if (form.get("grant_type") != ["client_credentials"]
                or form.get("client_id") != [cid]
                or form.get("client_secret") != [secret]):
            return self.answer(401, {}, {"error": "invalid_client"})
        with lock:
            t = "tok-%d" % (len(tokens) + 1)
            tokens.add(t)
        self.answer(200, {}, {"access_token": t, "token_type": "Bearer", "expires_in": 3600})

    def introspect(self):
        form = urllib.parse.parse_qs(self.body())
        expected = "Basic " + base64.b64encode(args.introspect.encode()).decode()
        if self.headers.get("Authorization") != expected:
            return self.answer(401, {}, {"error": "invalid_client"})
        token = (form.get("token") or [""])[0]
        with lock:
            scope = active.get(token)
        if scope is None:
            return self.answer(200, {}, {"active": False})
        self.answer(200, {}, {"active": True, "scope": scope, "client_id": "lis",
                              "iss": "https://idp.example", "aud": "ecko",
                              "exp": int(time.time()) + 3600})

    def revoke(self):
        form = urllib.parse.parse_qs(self.body())
        with lock:
            active.pop((form.get("token") or [""])[0], None)
        self.answer(200, {}, {})

    def authorized(self):
        if args.api_key:
            name, value = args.api_key.split("=", 1)
            if self.headers.get(name) != value:
                return False
        if args.client:
            auth = self.headers.get("Authorization") or ""
            if not (auth.startswith("Bearer ") and auth[7:] in tokens):
                return False
        return True

    def handle_any(self):
        if self.path == "/token" and args.client:
            return self.token()
        if self.path == "/introspect" and args.introspect:
            return self.introspect()
        if self.path == "/revoke" and args.introspect:
            return self.revoke()
        body = self.body()
        with lock:
            count[0] += 1
            n = count[0]
            # Written whole, then renamed: a reader polling for it never
            # sees a file half written.
            tmp = os.path.join(args.out, "%d.json.tmp" % n)
            with open(tmp, "w") as f:
                json.dump({"at": time.time(), "method": self.command, "path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}, f)
            os.rename(tmp, os.path.join(args.out, "%d.json" % n))
            planned = script.get(self.path) or []
            next_answer = planned.pop(0) if planned else None
        if not self.authorized():
            return self.answer(401, {}, {"error": "unauthorized"})
        if next_answer:
            status, headers, answer = next_answer
            return self.answer(status, headers, answer)
        self.answer(201, {}, {"id": "R-%d" % n, "status": "queued"})

    do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = handle_any


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
with open(os.path.join(args.out, "port.tmp"), "w") as f:
    f.write(str(server.server_address[1]))
os.rename(os.path.join(args.out, "port.tmp"), os.path.join(args.out, "port"))
server.serve_forever()
