"""A minimal OTLP/HTTP (JSON) receiver for tests: every POST body is saved as a numbered JSON
file in --dir, and answered 200 with an empty export response. Prints "ready" once listening."""

import argparse
import http.server
import itertools
import pathlib
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--dir", required=True)
args = parser.parse_args()
out = pathlib.Path(args.dir)
counter = itertools.count()


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        name = out / f"{next(counter):06d}.json"
        tmp = name.with_suffix(".tmp")
        tmp.write_bytes(body)
        tmp.rename(name)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Sink)
print("ready", flush=True)
sys.stdout.flush()
server.serve_forever()
