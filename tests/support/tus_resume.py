"""Resumes a tus upload with tuspy (a tus client Kiln did not write).

Usage: tus_resume.py <endpoint> <upload url> <bearer token> <file>
Prints the offset the client resumed from, then the offset it ended at.
"""

import sys

from tusclient import client


def main() -> None:
    endpoint, url, token, path = sys.argv[1:5]
    tus = client.TusClient(endpoint, headers={"Authorization": f"Bearer {token}"})
    uploader = tus.uploader(path, url=url, chunk_size=64 * 1024)
    # With a URL, tuspy asks the server (HEAD) where to go on from.
    print(uploader.offset, flush=True)
    uploader.upload()
    print(uploader.offset, flush=True)


if __name__ == "__main__":
    main()
