"""Drives goal 2 of BENCHMARKS.md: uploads one photo `count` times through the API with
`concurrency` uploads in flight, then waits until every media is `ready`, and prints the
images per second from the first upload to the last media seen ready.

Usage: pipeline_load.py BASE_URL API_KEY PHOTO COUNT CONCURRENCY
"""

import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

base, key, photo, count, concurrency = sys.argv[1:6]
count, concurrency = int(count), int(concurrency)
body = open(photo, "rb").read()
auth = {"Authorization": f"Bearer {key}"}


def unique(index):
    # A JPEG comment of its own after SOI: Kiln shares the files of identical uploads (no
    # second job), and this measures processing, so every upload's bytes differ.
    text = f"kiln-bench {index}".encode()
    return body[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + body[2:]


def upload(index):
    request = urllib.request.Request(
        f"{base}/v1/media", data=unique(index), headers=auth, method="POST"
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)["id"]


def status(media_id):
    request = urllib.request.Request(f"{base}/v1/media/{media_id}", headers=auth)
    with urllib.request.urlopen(request) as response:
        return json.load(response)["status"]


started = time.monotonic()
with ThreadPoolExecutor(concurrency) as pool:
    pending = set(pool.map(upload, range(count)))
uploaded = time.monotonic() - started
while pending:
    for media_id in list(pending):
        state = status(media_id)
        if state == "failed":
            sys.exit(f"media {media_id} failed")
        if state == "ready":
            pending.discard(media_id)
    if pending:
        time.sleep(0.02)
elapsed = time.monotonic() - started
print(f"images={count} uploaded_s={uploaded:.2f} elapsed_s={elapsed:.2f} images_per_s={count / elapsed:.3f}")
