"""An HTTPS server that takes uploads with PUT, as a hub's support service
would: it requires a client certificate of the test CA, keeps each body as
OUT/<n>.body with its path, headers and the client certificate's subject in
OUT/<n>.json, and answers 201. Writes its port to OUT/port once listening."""

import argparse
import http.server
import json
import os
import ssl


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    count = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            count[0] += 1
            base = os.path.join(args.out, str(count[0]))
            with open(base + ".body", "wb") as f:
                f.write(body)
            peer = self.connection.getpeercert() or {}
            subject = [v for rdn in peer.get("subject", ()) for (_, v) in rdn]
            with open(base + ".json", "w") as f:
                json.dump(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "client_subject": subject,
                    },
                    f,
                )
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.load_verify_locations(args.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    with open(os.path.join(args.out, "port.tmp"), "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(os.path.join(args.out, "port.tmp"), os.path.join(args.out, "port"))
    server.serve_forever()


if __name__ == "__main__":
    main()
