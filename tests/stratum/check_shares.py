#!/usr/bin/env python3
"""Independent check of the shares the Stratum test pool accepted.

Reads the JSON lines server.js recorded and, for every accepted submission, rebuilds
the coinbase, merkle root and 80-byte header from the job and the submitted fields, and
double-hashes it with Python's hashlib (no code shared with gridminer or the node
harness). Prints a JSON summary; exits 1 if any accepted share is wrong or none exists.

Usage: check_shares.py SUBMISSIONS.jsonl
"""
import hashlib
import json
import sys

DIFF1 = 0xFFFF * 2**208


def dsha(b: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def le32(hex_be: str) -> bytes:
    return bytes.fromhex(hex_be)[::-1]


def header(job, en1, en2, ntime, nonce, version):
    root = dsha(bytes.fromhex(job["coinb1"] + en1 + en2 + job["coinb2"]))
    for branch in job["branches"]:
        root = dsha(root + bytes.fromhex(branch))
    prev = bytes.fromhex(job["prevhash"])
    prev = b"".join(prev[i:i + 4][::-1] for i in range(0, 32, 4))
    return (version.to_bytes(4, "little") + prev + root + le32(ntime)
            + le32(job["nbits"]) + le32(nonce))


def check(rec):
    job = rec["job"]
    mask = int(rec["mask"], 16)
    version = int(job["version"], 16)
    if rec["version_bits"] is not None:
        bits = int(rec["version_bits"], 16)
        if bits & ~mask:
            return "version bits outside the mask"
        version = (version & ~mask) | (bits & mask)
    h = header(job, rec["extranonce1"], rec["extranonce2"], rec["ntime"], rec["nonce"], version)
    if len(h) != 80:
        return "header is %d bytes" % len(h)
    value = int.from_bytes(dsha(h), "little")
    # The same IEEE-double division pools use for difficulty -> target.
    target = int(DIFF1 / float(rec["difficulty"]))
    if value > target:
        return "hash %064x above target %064x" % (value, target)
    if rec.get("hash") and rec["hash"] != "%064x" % value:
        return "hash differs from the pool's record"
    return None


def main():
    records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    accepted = [r for r in records if r["accepted"]]
    bad = []
    for r in accepted:
        why = check(r)
        if why:
            bad.append({"job_id": r["job_id"], "nonce": r["nonce"], "why": why})
    rolled = sum(1 for r in accepted if r["version_bits"] not in (None, "00000000"))
    summary = {"submissions": len(records), "accepted": len(accepted), "verified": len(accepted) - len(bad),
               "version_rolled": rolled, "bad": bad}
    print(json.dumps(summary))
    sys.exit(1 if bad or not accepted else 0)


if __name__ == "__main__":
    main()
