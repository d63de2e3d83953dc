"""A download server for bundles, over HTTPS (or plain HTTP with --plain),
serving the files of --dir:

  /NAME              the file, with its Content-Length
  /truncated/NAME    the full Content-Length, then half the file and the
                     connection closed
  /undeclared/NAME   the file with no Content-Length (HTTP/1.0, ended by
                     TLS's close_notify and closing the connection)
  /cut/NAME          no Content-Length, half the file, the connection
                     closed without close_notify

Writes its port to --port-file once listening."""

import argparse
import http.server
import os
import ssl


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--plain", action="store_true")
    args = p.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            mode, _, name = self.path.lstrip("/").rpartition("/")
            path = os.path.join(args.dir, os.path.basename(name))
            if not os.path.isfile(path):
                self.send_error(404)
                return
            with open(path, "rb") as f:
                body = f.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if mode not in ("undeclared", "cut"):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if mode in ("truncated", "cut"):
                body = body[: len(body) // 2]
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            if mode == "undeclared" and not args.plain:
                # A body ended by the connection's close is complete only
                # with TLS's close_notify; a cut-off one lacks it.
                try:
                    self.connection.unwrap()
                except (OSError, ssl.SSLError):
                    pass

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if not args.plain:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
