"""A webhook receiver as a pager or chat bridge would run one: an HTTP
server on 127.0.0.1 that keeps each POST as OUT/<n>.json (its path, its
headers with lower-case names, and its body as text) and answers 200.
Writes its port to OUT/port once listening."""

import argparse
import http.server
import json
import os


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    count = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            count[0] += 1
            record = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
            tmp = os.path.join(args.out, f"{count[0]}.tmp")
            with open(tmp, "w") as f:
                json.dump(record, f)
            os.rename(tmp, os.path.join(args.out, f"{count[0]}.json"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    tmp = os.path.join(args.out, "port.tmp")
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, os.path.join(args.out, "port"))
    server.serve_forever()


if __name__ == "__main__":
    main()
