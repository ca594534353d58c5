"""The peer of `kelp bench dedup`: PyPI videohash on the same files, end to end.

Usage: python videohash-pairs.py FILE... ; prints one line per file (`hash <name> <hash>`) and one
per pair videohash calls similar (`pair <name> <name>`), using its own `is_similar` rule (at most
15% of the 64 bits differ). Installed by infra/install-bench.sh.
"""
import os
import sys

from videohash import VideoHash


def main(paths):
    hashes = []
    for p in paths:
        h = VideoHash(path=p)
        hashes.append((os.path.basename(p), h))
        print("hash", os.path.basename(p), h.hash, flush=True)
        h.delete_storage_path()
    for i, (a, ha) in enumerate(hashes):
        for b, hb in hashes[i + 1:]:
            if ha.is_similar(hb):
                print("pair", a, b, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
