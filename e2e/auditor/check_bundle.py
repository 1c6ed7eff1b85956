#!/usr/bin/env python3
"""An auditor's check of a Watchtower proof bundle, written without Watchtower's code.

Usage: check_bundle.py BUNDLE VERIFIER_KEY_FILE

Checks the checkpoint's Ed25519 signature (C2SP signed note) with the pinned verifier
key, recomputes every record's leaf from its canonical JSON, and verifies each
RFC 9162 inclusion proof against the signed root. Needs only the standard library
and `cryptography`. Prints one line per record; exits 1 on any failure.
"""
import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def open_checkpoint(note, verifier_key):
    name, key_id, key = verifier_key.strip().split("+", 2)  # base64 may hold "+"
    key = base64.b64decode(key)
    assert key[0] == 1, "not an Ed25519 verifier key"
    public = Ed25519PublicKey.from_public_bytes(key[1:])
    text, _, signatures = note.partition("\n\n")
    text += "\n"
    for line in signatures.splitlines():
        if not line.startswith("\u2014 "):
            continue
        signer, blob = line[2:].rsplit(" ", 1)
        blob = base64.b64decode(blob)
        if signer == name and blob[:4] == bytes.fromhex(key_id):
            public.verify(blob[4:], text.encode("utf-8"))  # raises on a bad signature
            origin, size, root = text.splitlines()[:3]
            assert origin == name, "a checkpoint of another log"
            return int(size), base64.b64decode(root)
    raise SystemExit("the checkpoint is not signed by the pinned key")


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def included(index, size, leaf, proof, root):
    """RFC 9162, 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def main():
    bundle = json.load(open(sys.argv[1], encoding="utf-8"))
    size, root = open_checkpoint(bundle["checkpoint"], open(sys.argv[2], encoding="utf-8").read())
    failures = 0
    for item in bundle["records"]:
        entry = json.loads(item["entry"])
        event = item["record"]["event"]
        ok = (
            canonical(entry) == item["entry"].encode("utf-8")
            and hashlib.sha256(canonical(item["record"])).hexdigest() == entry["record_sha256"]
            and [entry["host_id"], entry["boot_id"], entry["seq"], entry["time_unix_ns"]]
            == [event["host_id"], event["boot_id"], event["seq"], event["time_unix_ns"]]
        )
        leaf = hashlib.sha256(b"\x00" + item["entry"].encode("utf-8")).digest()
        proof = [bytes.fromhex(h) for h in item["inclusion_proof"]]
        ok = ok and included(item["index"], size, leaf, proof, root)
        print(f"leaf {item['index']} seq {event['seq']}: {'proven' if ok else 'NOT PROVEN'}")
        failures += not ok
    print(f"{len(bundle['records']) - failures} of {len(bundle['records'])} records proven in a tree of {size}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
