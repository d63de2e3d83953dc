"""A REST client on Python's http.client: POSTs the file BODY to
http://127.0.0.1:PORT/PATH COUNT times on one kept-alive connection (a new
one if the server closed it) and prints one JSON line per answer: status,
headers (lower-case names) and body.
"""

import argparse
import http.client
import json

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--path", default="/fhir")
parser.add_argument("--body", required=True)
parser.add_argument("--type", default="application/fhir+json")
parser.add_argument("--header", action="append", default=[])
parser.add_argument("--count", type=int, default=1)
args = parser.parse_args()

with open(args.body, "rb") as f:
    body = f.read()
headers = {"Content-Type": args.type}
for h in args.header:
    name, value = h.split(":", 1)
    headers[name.strip()] = value.strip()

conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=20)
for _ in range(args.count):
    try:
        conn.request("POST", args.path, body=body, headers=headers)
        r = conn.getresponse()
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=20)
        conn.request("POST", args.path, body=body, headers=headers)
        r = conn.getresponse()
    text = r.read().decode("utf-8", "replace")
    print(json.dumps({"status": r.status,
                      "headers": {k.lower(): v for k, v in r.getheaders()},
                      "body": text}), flush=True)
