"""A webhook receiver for Kiln's tests: every delivery is verified with the Standard Webhooks
reference library (`standardwebhooks` from PyPI, which Kiln did not write) and logged, and
answered as the test scripted.

    python webhook_receiver.py --port PORT

Control (JSON, on the same port):
  POST /_control/secrets   ["whsec_...", ...]   the secrets to verify with (each on its own)
  POST /_control/script    [{"status": 500}, {"status": 429, "retry_after": "3"},
                            {"status": 200, "sleep": 30}, ...]
                           answers for the next deliveries, in order (after `sleep` seconds,
                           when given); then 200
  GET  /_control/log       every request so far: {path, method, headers, id, timestamp,
                           signature, body, received_at, verified_with: [index of each
                           secret that verifies], answered}
Prints "ready" on stdout once listening; runs until killed.
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

LOCK = threading.Lock()
STATE = {"secrets": [], "script": [], "log": []}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _read(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length)

    def _answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_control/log":
            with LOCK:
                body = json.dumps(STATE["log"]).encode()
            self._answer(200, body, [("content-type", "application/json")])
        else:
            self._deliver(b"")

    def do_POST(self):
        body = self._read()
        if self.path == "/_control/secrets":
            with LOCK:
                STATE["secrets"] = json.loads(body)
            return self._answer(204)
        if self.path == "/_control/script":
            with LOCK:
                STATE["script"] = json.loads(body)
            return self._answer(204)
        self._deliver(body)

    def do_PUT(self):
        self._deliver(self._read())

    def do_PATCH(self):
        self._deliver(self._read())

    def do_DELETE(self):
        self._deliver(self._read())

    def _deliver(self, body):
        headers = {k.lower(): v for k, v in self.headers.items()}
        with LOCK:
            secrets = list(STATE["secrets"])
            answer = STATE["script"].pop(0) if STATE["script"] else {"status": 200}
        verified_with = []
        for index, secret in enumerate(secrets):
            try:
                # Task bodies need not be JSON: verify the bytes only.
                Webhook(secret).verify(body, headers, json_parse=False)
                verified_with.append(index)
            except WebhookVerificationError:
                pass
        with LOCK:
            STATE["log"].append(
                {
                    "path": self.path,
                    "method": self.command,
                    "headers": headers,
                    "id": headers.get("webhook-id"),
                    "timestamp": headers.get("webhook-timestamp"),
                    "signature": headers.get("webhook-signature"),
                    "body": body.decode("utf-8", "replace"),
                    "received_at": time.time(),
                    "verified_with": verified_with,
                    "answered": answer["status"],
                }
            )
        if "sleep" in answer:
            time.sleep(answer["sleep"])
        extra = []
        if "retry_after" in answer:
            extra.append(("retry-after", str(answer["retry_after"])))
        self._answer(answer["status"], b'{"ok": true}', extra)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
