"""One concurrent writer, run as a process by the concurrency tests:

    python publisher.py MODE STORE_URI KEY[,KEY...] SRC_DIR GO_PREFIX

For the i-th key it waits until the file GO_PREFIX<i> exists (so that every writer starts that publish
at the same moment), then publishes SRC_DIR under the key (MODE ``put_dir``) or as a content-addressed
data set (MODE ``dataset``, key = checksum), and prints one JSON line with what it believes happened.
Storage settings come from the environment.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hybridmi.store import StoreError, publish_dataset, store_from_env


def publish(store, mode: str, key: str, src: str) -> dict:
    try:
        if mode == "put_dir":
            return {"version": store.put_dir(src, key).version}
        return {"reused": publish_dataset(store, src, key).reused}
    except StoreError as exc:
        return {"error": str(exc)}


def main(mode: str, uri: str, keys: str, src: str, go_prefix: str) -> int:
    store = store_from_env(uri)
    for i, key in enumerate(keys.split(",")):
        while not Path(f"{go_prefix}{i}").exists():
            time.sleep(0.002)
        print(json.dumps(publish(store, mode, key, src)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
