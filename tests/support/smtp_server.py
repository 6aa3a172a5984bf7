"""A real SMTP server for Kiln's email tests (aiosmtpd), answering as the test asks.

    python smtp_server.py --port PORT --dir DIR --mode accept|tempfail|reject [--fail N]

accept:   every message gets 250 and is saved as DIR/<n>.json ({mail_from, rcpt_tos, data}).
tempfail: the first N messages get "451 4.3.0 try again later", then as accept.
reject:   every message gets "550 5.1.1 mailbox unavailable".
Prints "ready" on stdout once listening; runs until killed.
"""

import argparse
import json
import os
import signal
import threading

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, mode, directory, fail):
        self.mode = mode
        self.directory = directory
        self.fail = fail
        self.seen = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.seen += 1
            seen = self.seen
        if self.mode == "reject":
            return "550 5.1.1 mailbox unavailable"
        if self.mode == "tempfail" and seen <= self.fail:
            return "451 4.3.0 try again later"
        path = os.path.join(self.directory, f"{seen:04}.json")
        with open(path + ".tmp", "w") as out:
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "data": envelope.original_content.decode("utf-8", "replace"),
                },
                out,
            )
        os.rename(path + ".tmp", path)
        return "250 OK"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--mode", choices=["accept", "tempfail", "reject"], default="accept")
    parser.add_argument("--fail", type=int, default=1)
    args = parser.parse_args()
    controller = Controller(
        Handler(args.mode, args.dir, args.fail), hostname="127.0.0.1", port=args.port
    )
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
