#!/usr/bin/env python3
"""Self-test of tests/ledger_verify.py (issue 15): the verifier must accept logs and
proofs made to the specifications, and reject every tampered one.

The logs are built here, in the ledger's directory format, with their own simple
code: the Merkle tree hash, audit paths and consistency proofs are the recursive
definitions of RFC 6962 §2.1, §2.1.1 and §2.1.2 written out literally, not the
iterative RFC 9162 verification algorithms the verifier implements, so the two check
each other; and both are held to published vectors (the Certificate Transparency
reference tree, the Go sumdb/note example note, RFC 8785 Appendix B numbers), so they
cannot merely agree on a shared mistake. Keys are fresh Ed25519 keys from `cryptography`.

Run: python3 tests/ledger_verify_selftest.py   (exit status 0 = all passed)
"""

import base64
import functools
import hashlib
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ledger_verify as lv  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ORIGIN = "selftest.gridminer.example/ledger"


def b64(raw):
    return base64.b64encode(raw).decode("ascii")


# --- RFC 6962 §2.1, literally ------------------------------------------------


class Log:
    """Entries D[0:n] and the RFC 6962 functions over their ranges, memoised."""

    def __init__(self, entries):
        self.d = entries

    @functools.lru_cache(maxsize=None)
    def mth(self, a, b):
        """MTH(D[a:b]) (RFC 6962 §2.1)."""
        n = b - a
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return hashlib.sha256(b"\x00" + self.d[a]).digest()
        k = largest_power_of_two_below(n)
        return hashlib.sha256(b"\x01" + self.mth(a, a + k) + self.mth(a + k, b)).digest()

    def path(self, m, a, b):
        """PATH(m, D[a:b]) (RFC 6962 §2.1.1), leaf sibling first."""
        n = b - a
        if n == 1:
            return []
        k = largest_power_of_two_below(n)
        if m < k:
            return self.path(m, a, a + k) + [self.mth(a + k, b)]
        return self.path(m - k, a + k, b) + [self.mth(a, a + k)]

    def proof(self, m, n):
        """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) (RFC 6962 §2.1.2). RFC 6962 defines it
        for 0 < m < n only; from the empty tree there is nothing to prove: empty."""
        if m == 0:
            return []
        return self.subproof(m, 0, n, True)

    def subproof(self, m, a, b, whole):
        n = b - a
        if m == n:
            return [] if whole else [self.mth(a, b)]
        k = largest_power_of_two_below(n)
        if m <= k:
            return self.subproof(m, a, a + k, whole) + [self.mth(a + k, b)]
        return self.subproof(m - k, a + k, b, False) + [self.mth(a, a + k)]


def largest_power_of_two_below(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


# --- keys, notes, the directory ----------------------------------------------


class Key:
    def __init__(self, name):
        self.name = name
        self.sk = Ed25519PrivateKey.generate()
        self.pk = self.sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.id = hashlib.sha256(name.encode() + b"\n\x01" + self.pk).digest()[:4]
        self.vkey = name + "+" + self.id.hex() + "+" + b64(bytes([1]) + self.pk)

    def sign_line(self, text):
        return f"\u2014 {self.name} {b64(self.id + self.sk.sign(text.encode()))}\n"


def note(text, *keys):
    return text + "\n" + "".join(k.sign_line(text) for k in keys)


def checkpoint_text(log, size, extensions=()):
    return f"{ORIGIN}\n{size}\n{b64(log.mth(0, size))}\n" + "".join(e + "\n" for e in extensions)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def tiles_for(log, size):
    """{path: bytes} of every tile and bundle a tree of `size` has (tlog-tiles)."""
    out = {}
    n_bundles = -(-size // 256)
    for n in range(n_bundles):
        w = min(256, size - n * 256)
        out[lv.tile_path("entries", n, w)] = b"".join(len(e).to_bytes(2, "big") + e for e in log.d[n * 256 : n * 256 + w])
    level = 0
    while size >> (8 * level):
        count = size >> (8 * level)
        span = 256**level
        for n in range(-(-count // 256)):
            w = min(256, count - n * 256)
            out[lv.tile_path(level, n, w)] = b"".join(
                log.mth((n * 256 + i) * span, (n * 256 + i + 1) * span) for i in range(w)
            )
        level += 1
    return out


def entry(i):
    # canonical JSON, as gridminer writes it; varying lengths and a non-ASCII string
    v = {"i": i, "kind": "energy_account", "site": "d\u00e9-hybrid", "wh": (i * 7919) % 100003, "x": "y" * (i % 37)}
    if i % 5 == 0:
        v["price"] = 12.5
    if i % 7 == 0:
        v["ci"] = [1e-7, 0.00001, 1e21, -0.25]  # written as RFC 8785 writes them, not as repr
    return lv.canonical_json(v).encode()


def build(root, key, entries, sizes, extra_keys=()):
    """A ledger directory that checkpointed at each of `sizes` (ascending), keeping
    every partial tile it ever wrote (tlog-tiles lets a log delete them; keeping them
    makes the verifier check old ones too)."""
    log = Log(tuple(entries))
    for s in sizes:
        for path, data in tiles_for(log, s).items():
            write(os.path.join(root, path), data)
        signed = note(checkpoint_text(log, s), key, *extra_keys)
        write(os.path.join(root, "checkpoints", str(s)), signed)
        write(os.path.join(root, "checkpoint"), signed)
    write(os.path.join(root, key.name.replace("/", "_") + ".vkey"), key.vkey + "\n")
    return log


def inclusion_doc(log, key, index, size):
    return {
        "index": index,
        "tree_size": size,
        "leaf_hash": b64(log.mth(index, index + 1)),
        "entry": b64(log.d[index]),
        "proof": [b64(h) for h in log.path(index, 0, size)],
        "root": b64(log.mth(0, size)),
        "checkpoint": note(checkpoint_text(log, size), key),
    }


def consistency_doc(log, key, m, n):
    return {
        "from": m,
        "to": n,
        "from_root": b64(log.mth(0, m)),
        "to_root": b64(log.mth(0, n)),
        "proof": [b64(h) for h in log.proof(m, n)],
        "checkpoint": note(checkpoint_text(log, n), key),
    }


# --- the test harness ---------------------------------------------------------

failures = []
counts = {"accepted": 0, "rejected": 0}


def accepts(what, fn, *args):
    try:
        fn(*args)
        counts["accepted"] += 1
    except lv.VerifyError as e:
        failures.append(f"should accept {what}: {e}")


def rejects(what, fn, *args):
    try:
        fn(*args)
        failures.append(f"should reject {what}")
    except lv.VerifyError:
        counts["rejected"] += 1


def flip(data, pos, mask=0x01):
    b = bytearray(data)
    b[pos] ^= mask
    return bytes(b)


def flip_b64(text, i):
    """Flip one byte of a base64-encoded hash inside a JSON proof document."""
    raw = bytearray(base64.b64decode(text))
    raw[i % len(raw)] ^= 0x80
    return b64(bytes(raw))


def with_each_proof_hash_flipped(doc):
    """(k, a copy of the proof document with hash k of its proof flipped), for every k."""
    for k in range(len(doc["proof"])):
        bad = dict(doc, proof=list(doc["proof"]))
        bad["proof"][k] = flip_b64(bad["proof"][k], k)
        yield k, bad


def mutate_file(path, fn):
    with open(path, "rb") as f:
        old = f.read()
    with open(path, "wb") as f:
        f.write(fn(old))
    return old


def restore(path, data):
    with open(path, "wb") as f:
        f.write(data)


SIZES = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 100, 255, 256, 257, 511, 512, 513, 600]


def test_proofs(tmp, key, other):
    entries = [entry(i) for i in range(600)]
    log = Log(tuple(entries))
    kv = lv.parse_vkey(key.vkey)
    wrong = lv.parse_vkey(other.vkey)

    # inclusion: every leaf of the small trees and of a few large ones, sampled elsewhere
    for n in SIZES[1:]:
        indices = range(n) if n <= 17 or n in (257, 513) else sorted({0, 1, n // 2, n - 2, n - 1, 255 % n, 256 % n})
        for i in indices:
            accepts(f"inclusion {i}/{n}", lv.check_inclusion_doc, inclusion_doc(log, key, i, n), kv)
    # consistency: every pair of sizes, including from == to and from == 0
    for a, m in enumerate(SIZES):
        for n in SIZES[a:]:
            accepts(f"consistency {m}->{n}", lv.check_consistency_doc, consistency_doc(log, key, m, n), kv)

    # tampering with inclusion proofs
    for i, n in [(0, 1), (5, 9), (255, 256), (256, 257), (300, 600), (599, 600)]:
        good = inclusion_doc(log, key, i, n)
        rejects(f"inclusion {i}/{n} under a wrong key", lv.check_inclusion_doc, good, wrong)
        for k, bad in with_each_proof_hash_flipped(good):
            rejects(f"inclusion {i}/{n} with proof hash {k} flipped", lv.check_inclusion_doc, bad, kv)
        if good["proof"]:
            rejects(f"inclusion {i}/{n} with a hash dropped", lv.check_inclusion_doc, dict(good, proof=good["proof"][:-1]), kv)
        rejects(f"inclusion {i}/{n} with a hash added", lv.check_inclusion_doc, dict(good, proof=good["proof"] + [good["root"]]), kv)
        rejects(f"inclusion {i}/{n} with the entry changed", lv.check_inclusion_doc,
                dict(good, entry=b64(flip(log.d[i], 3))), kv)
        rejects(f"inclusion {i}/{n} with another leaf hash", lv.check_inclusion_doc,
                dict(good, leaf_hash=flip_b64(good["leaf_hash"], 0)), kv)
        rejects(f"inclusion {i}/{n} at another index", lv.check_inclusion_doc, dict(good, index=(i + 1) % n if n > 1 else 1), kv)
        rejects(f"inclusion {i}/{n} with another tree size", lv.check_inclusion_doc, dict(good, tree_size=n + 1), kv)
        rejects(f"inclusion {i}/{n} with another root", lv.check_inclusion_doc, dict(good, root=flip_b64(good["root"], 7)), kv)
        sig = good["checkpoint"]
        rejects(f"inclusion {i}/{n} with a flipped signature", lv.check_inclusion_doc,
                dict(good, checkpoint=sig[:-10] + ("A" if sig[-10] != "A" else "B") + sig[-9:]), kv)
        # a checkpoint for another size, validly signed, does not cover this proof
        n2 = n + 1 if n < len(log.d) else n - 1
        rejects(f"inclusion {i}/{n} against the checkpoint of {n2}", lv.check_inclusion_doc,
                dict(good, checkpoint=note(checkpoint_text(log, n2), key)), kv)

    # tampering with consistency proofs
    for m, n in [(1, 2), (3, 7), (4, 8), (7, 8), (255, 256), (256, 257), (256, 600), (257, 513), (512, 513), (100, 600)]:
        good = consistency_doc(log, key, m, n)
        rejects(f"consistency {m}->{n} under a wrong key", lv.check_consistency_doc, good, wrong)
        for k, bad in with_each_proof_hash_flipped(good):
            rejects(f"consistency {m}->{n} with proof hash {k} flipped", lv.check_consistency_doc, bad, kv)
        rejects(f"consistency {m}->{n} with a hash dropped", lv.check_consistency_doc, dict(good, proof=good["proof"][:-1]), kv)
        rejects(f"consistency {m}->{n} with a hash added", lv.check_consistency_doc,
                dict(good, proof=good["proof"] + [good["to_root"]]), kv)
        # when `from` is a power of two, the proof must NOT carry the old root: RFC 9162 §2.1.4.2 step 2 adds it
        rejects(f"consistency {m}->{n} with the old root prepended", lv.check_consistency_doc,
                dict(good, proof=[good["from_root"]] + good["proof"]), kv)
        swapped = dict(good, **{"from": n, "to": m, "from_root": good["to_root"], "to_root": good["from_root"],
                                "checkpoint": note(checkpoint_text(log, m), key)})
        rejects(f"consistency {m}->{n} with from/to swapped", lv.check_consistency_doc, swapped, kv)
        rejects(f"consistency {m}->{n} with another old root", lv.check_consistency_doc,
                dict(good, from_root=flip_b64(good["from_root"], 1)), kv)
        rejects(f"consistency {m}->{n} with another old size", lv.check_consistency_doc, dict(good, **{"from": m + 1}), kv)
        # a proof for another (valid) pair of sizes
        rejects(f"consistency {m}->{n} with the proof of {m}->{n - 1}", lv.check_consistency_doc,
                dict(good, proof=consistency_doc(log, key, m, n - 1)["proof"]) if n - 1 > m else dict(good, proof=[]), kv)
    # a lying log can sign any root for any size: the path length must still fit the size
    # (the sn checks of RFC 9162 §2.1.3.2 step 5 and §2.1.4.2 step 7)
    short = inclusion_doc(log, key, 0, 4)
    short.update(tree_size=8, checkpoint=note(f"{ORIGIN}\n8\n{short['root']}\n", key))
    rejects("inclusion whose path is for a tree of 4 but claims 8 (same root)", lv.check_inclusion_doc, short, kv)
    short = consistency_doc(log, key, 3, 4)
    short.update(to=8, checkpoint=note(f"{ORIGIN}\n8\n{short['to_root']}\n", key))
    rejects("consistency whose proof is for 3->4 but claims 3->8 (same root)", lv.check_consistency_doc, short, kv)
    rejects("consistency 0->5 with a non-empty proof", lv.check_consistency_doc,
            dict(consistency_doc(log, key, 0, 5), proof=[b64(log.mth(0, 5))]), kv)
    rejects("consistency 5->5 with different roots", lv.check_consistency_doc,
            dict(consistency_doc(log, key, 5, 5), from_root=b64(log.mth(0, 4))), kv)

    # --dir: the old size must be a checkpoint the log signed
    d = os.path.join(tmp, "consistency-dir")
    build(d, key, entries[:300], [10, 100, 256, 300])
    accepts("consistency 100->300 with --dir", lv.check_consistency_doc, consistency_doc(log, key, 100, 300), kv, d)
    rejects("consistency 101->300 with --dir (no checkpoints/101)", lv.check_consistency_doc,
            consistency_doc(log, key, 101, 300), kv, d)
    other_log = Log(tuple(entry(i + 1000) for i in range(300)))
    write(os.path.join(d, "checkpoints", "10"), note(checkpoint_text(other_log, 10), key))
    rejects("consistency 10->300 with --dir whose checkpoints/10 has another root", lv.check_consistency_doc,
            consistency_doc(log, key, 10, 300), kv, d)


# The reference tree of Certificate Transparency's test suites (the same eight leaves
# and results appear in every RFC 6962 implementation's tests): an outside check that
# this file's recursion and the verifier's iterations compute the standard's tree, not
# merely agree with each other. Proof indices are 0-based.
REF_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
REF_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
REF_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
# (1, 8) starts from a power of two: the published proof does not carry the old root.
REF_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


# The signed note of golang.org/x/mod/sumdb/note's documentation, and a vkey whose
# base64 contains a '+' (transparency-dev/formats' tests): the note format and the key
# ID derivation as the Go ecosystem writes them.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
PLUS_VKEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"


# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text; and §3.2.3's
# member-sorting example (by UTF-16 code units, so the emoji sorts before U+FB33).
JCS_NUMBERS = [
    ("0000000000000000", "0"), ("8000000000000000", "0"), ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"), ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"), ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"), ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"), ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"), ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"), ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]
JCS_SORTED = ('{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",'
              '"\u20ac":"Euro Sign","\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}')


def test_canonical_json():
    for bits, want in JCS_NUMBERS:
        x = struct.unpack(">d", bytes.fromhex(bits))[0]
        got = lv.es_number(x)
        if got != want:
            failures.append(f"RFC 8785 number {bits}: wrote {got}, the RFC says {want}")
        else:
            counts["accepted"] += 1
    accepts("RFC 8785's sorting example", lv.check_canonical_json, JCS_SORTED.encode(), 0)
    for good in [b'{"a":1e-7}', b'[0.00001,1e+21,100000000000000000000,-1.5,0.1]', b'{"a":"\\u001f\\n","b":null}',
                 b'{"a":18446744073709551615}', '{"\u00e9":"\u2028"}'.encode()]:
        accepts(f"canonical JSON {good!r}", lv.check_canonical_json, good, 0)
    for bad in [b'{"a":1.0}', b'{"a":1e-07}', b'-0', b'{"a":1E+21}', rb'{"a":"\u00e9"}', rb'{"a":"\/"}',
                '{"\ufb33":1,"\U0001f600":2}'.encode(), b'{"a":1} ', b'[1,]']:
        rejects(f"non-canonical JSON {bad!r}", lv.check_canonical_json, bad, 0)


def test_reference_vectors():
    go = lv.parse_vkey(GO_VKEY)
    try:
        if lv.open_note(GO_NOTE, go, "go note") != GO_TEXT:
            failures.append("the Go documentation's note opened to another text")
        counts["accepted"] += 1
    except lv.VerifyError as e:
        failures.append(f"should accept the Go documentation's signed note: {e}")
    rejects("the Go documentation's note with its text changed", lv.open_note,
            GO_NOTE.replace("cryptography", "cryptographY"), go, "go note")
    accepts("a vkey whose base64 contains '+'", lv.parse_vkey, PLUS_VKEY)

    leaves = [bytes.fromhex(x) for x in REF_LEAVES]
    log = Log(tuple(leaves))
    tree = lv.Tree([lv.leaf_hash(e) for e in leaves])
    roots = [bytes.fromhex(r) for r in REF_ROOTS]
    for n in range(9):
        if log.mth(0, n) != roots[n]:
            failures.append(f"self-test MTH of the reference tree of size {n} is not the published root")
        if tree.root(n) != roots[n]:
            failures.append(f"verifier root of the reference tree of size {n} is not the published root")
    for i, n, proof in REF_INCLUSION:
        proof = [bytes.fromhex(h) for h in proof]
        if log.path(i, 0, n) != proof:
            failures.append(f"self-test PATH({i}, D[{n}]) is not the published one")
        accepts(f"published inclusion proof {i}/{n}", lv.verify_inclusion, i, n, lv.leaf_hash(leaves[i]), proof, roots[n])
    for m, n, proof in REF_CONSISTENCY:
        proof = [bytes.fromhex(h) for h in proof]
        if log.proof(m, n) != proof:
            failures.append(f"self-test PROOF({m}, D[{n}]) is not the published one")
        accepts(f"published consistency proof {m}->{n}", lv.verify_consistency, m, n, roots[m], roots[n], proof)


def test_keys_and_notes(key, other):
    log = Log(tuple(entry(i) for i in range(20)))
    kv = lv.parse_vkey(key.vkey)
    text = checkpoint_text(log, 20)
    accepts("checkpoint", lv.read_checkpoint, note(text, key), kv, "cp")
    accepts("checkpoint with an unknown key's signature too", lv.read_checkpoint, note(text, other, key), kv, "cp")
    accepts("checkpoint with extension lines", lv.read_checkpoint, note(checkpoint_text(log, 20, ["ext one", "x"]), key), kv, "cp")
    rejects("checkpoint signed only by another key", lv.read_checkpoint, note(text, other), kv, "cp")
    bad_sig = text + "\n" + key.sign_line(text.replace("20", "21", 1))
    rejects("checkpoint with an invalid signature from the key (beside a valid one)", lv.read_checkpoint,
            note(text, key) + bad_sig[len(text) + 1 :], kv, "cp")
    rejects("checkpoint whose text was changed after signing", lv.read_checkpoint,
            note(text, key).replace("\n20\n", "\n21\n", 1), kv, "cp")
    rejects("checkpoint with a hyphen instead of the em dash", lv.read_checkpoint,
            note(text, key).replace("\u2014", "-"), kv, "cp")
    # base64 whose unused low bits were changed decodes to the same bytes: only a
    # canonical-encoding check notices (32- and 68-byte values both end in 2 spare bits)
    signed = note(text, key)
    sig = signed.rstrip("\n").rsplit(" ", 1)[1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(sig[-2])
    loose = sig[:-2] + alphabet[last ^ 1] + "="
    assert base64.b64decode(loose) == base64.b64decode(sig)
    rejects("checkpoint whose signature is non-canonical base64 of the same bytes", lv.read_checkpoint,
            signed.replace(sig, loose), kv, "cp")
    root_b64 = text.split("\n")[2]
    loose_root = root_b64[:-2] + alphabet[alphabet.index(root_b64[-2]) ^ 2] + "="
    assert base64.b64decode(loose_root) == base64.b64decode(root_b64)
    rejects("checkpoint whose root is non-canonical base64 of the same bytes (even if re-signed)", lv.read_checkpoint,
            note(text.replace(root_b64, loose_root), key), kv, "cp")
    rejects("checkpoint without signatures", lv.read_checkpoint, text + "\n", kv, "cp")
    rejects("checkpoint with size 020", lv.read_checkpoint, note(text.replace("\n20\n", "\n020\n"), key), kv, "cp")
    rejects("checkpoint with a short root", lv.read_checkpoint,
            note(f"{ORIGIN}\n20\n{b64(b'x' * 31)}\n", key), kv, "cp")
    rejects("checkpoint of two lines", lv.read_checkpoint, note(f"{ORIGIN}\n20\n", key), kv, "cp")
    # a key of the same name but another public key: its id differs, so the signature is ignored
    impostor = Key(key.name)
    rejects("checkpoint signed by an impostor key of the same name", lv.read_checkpoint, note(text, impostor), kv, "cp")
    # vkeys
    accepts("vkey", lv.parse_vkey, key.vkey)
    name, hexid, k = key.vkey.split("+", 2)
    rejects("vkey with a wrong key id", lv.parse_vkey, f"{name}+{(int(hexid, 16) ^ 1):08x}+{k}")
    rejects("vkey of another name with the same id", lv.parse_vkey, f"{name}x+{hexid}+{k}")
    rejects("vkey without the 0x01 type byte", lv.parse_vkey, f"{name}+{hexid}+{b64(key.pk)}")
    rejects("vkey with 7 hex digits", lv.parse_vkey, f"{name}+{hexid[1:]}+{k}")


def rejects_without(d, rel, kv):
    """The tree in `d` must fail verification while file `rel` is missing."""
    p = os.path.join(d, rel)
    with open(p, "rb") as f:
        saved = f.read()
    os.remove(p)
    rejects(f"tree of {os.path.basename(d)} without {rel}", lv.check_tree, d, kv)
    restore(p, saved)


def test_trees(tmp, key, other):
    kv = lv.parse_vkey(key.vkey)
    wrong = lv.parse_vkey(other.vkey)
    entries = [entry(i) for i in range(600)]
    # one log that checkpointed at every interesting size, and one log per latest size
    full = os.path.join(tmp, "full")
    build(full, key, entries, SIZES)
    accepts("tree of 600 checkpointed at 20 sizes", lv.check_tree, full, kv)
    s = lv.check_tree(full, kv)
    if s["checkpoints"] != len(SIZES) or s["entries"] != 600:
        failures.append(f"tree summary wrong: {s}")
    rejects("tree under a wrong key", lv.check_tree, full, wrong)
    for n in [0, 1, 255, 256, 257, 512, 513]:
        d = os.path.join(tmp, f"size-{n}")
        build(d, key, entries[:n], [n])
        accepts(f"tree of size {n}", lv.check_tree, d, kv)

    # a level-1 partial tile the size implies (size 256 -> tile/1/000.p/1) must be there
    rejects_without(os.path.join(tmp, "size-256"), "tile/1/000.p/1", kv)
    # the latest partial bundle and partial level-0 tile missing
    rejects_without(os.path.join(tmp, "size-513"), "tile/entries/002.p/1", kv)
    rejects_without(os.path.join(tmp, "size-513"), "tile/0/002.p/1", kv)
    accepts("tree of 513 restored", lv.check_tree, os.path.join(tmp, "size-513"), kv)

    # targeted tampering in the full log, each undone afterwards
    targets = [
        ("an entry byte in a full bundle", "tile/entries/000", 40),
        ("an entry length prefix", "tile/entries/001", 0),
        ("an entry byte in a partial bundle", "tile/entries/002.p/88", 10),
        ("an entry byte in an old partial bundle", "tile/entries/000.p/100", 50),
        ("a level-0 full tile", "tile/0/001", 32 * 17 + 3),
        ("a level-0 partial tile", "tile/0/002.p/88", 5),
        ("an old level-0 partial tile", "tile/0/000.p/17", 31),
        ("a level-1 partial tile", "tile/1/000.p/2", 40),
        ("the latest checkpoint's signature", "checkpoint", -10),
        ("the latest checkpoint's root", "checkpoint", len(ORIGIN) + 6),
        ("an old checkpoint's signature", "checkpoints/257", -5),
        ("an old checkpoint's size", "checkpoints/17", len(ORIGIN) + 2),
    ]
    for what, rel, pos in targets:
        path = os.path.join(full, rel)
        saved = mutate_file(path, lambda b: flip(b, pos))
        rejects(f"tree with a flipped byte in {what} ({rel})", lv.check_tree, full, kv)
        restore(path, saved)
    accepts("tree after restoring", lv.check_tree, full, kv)

    # a non-canonical entry, correctly hashed and signed: only the JSON check catches it
    for bad_entry, why in [(b'{"b":1,"a":2}', "unsorted"), (b'{"a": 1}', "whitespace"), (b'{"a":1e2}', "float repr"),
                           (b'{"a":1,"a":1}', "duplicate key"), (b'{"a":NaN}', "NaN"), (b"\xff", "not UTF-8")]:
        d = os.path.join(tmp, f"noncanonical-{abs(hash(why))}")
        build(d, key, entries[:5] + [bad_entry], [6])
        rejects(f"tree with a {why} JSON entry", lv.check_tree, d, kv)

    # entries written past the latest checkpoint are covered by no signature: counted, not checked
    d = os.path.join(tmp, "tail")
    log = build(d, key, entries[:300], [100, 300])
    for path, data in tiles_for(Log(tuple(entries[:320])), 320).items():
        write(os.path.join(d, path), data)
    s = lv.check_tree(d, kv)
    if s["tiles_beyond_checkpoint"] == 0:
        failures.append("tree with a tail past the checkpoint: tail not counted")
    accepts("tree with entries past the latest checkpoint", lv.check_tree, d, kv)
    # ...but a beyond-checkpoint bundle must still agree on the entries the checkpoint covers
    p = os.path.join(d, "tile", "entries", "001.p", "64")
    mutate_file(p, lambda b: flip(b, 3))
    rejects("tree whose wider bundle past the checkpoint rewrites a covered entry", lv.check_tree, d, kv)

    # tlog-tiles lets a log delete a partial tile once the full one exists; a client
    # falls back to the full tile (here: entries past the checkpoint filled tile 1)
    d = os.path.join(tmp, "fallback")
    build(d, key, entries[:300], [300])
    for path, data in tiles_for(Log(tuple(entries[:512])), 512).items():
        write(os.path.join(d, path), data)
    for rel in ["tile/entries/001.p/44", "tile/0/001.p/44"]:
        os.remove(os.path.join(d, rel))
    accepts("tree whose latest partial tiles gave way to full ones", lv.check_tree, d, kv)
    # files that are not tlog-tiles paths (a writer's temporary file) are noted, not failed
    write(os.path.join(d, "tile", "0", "000.tmp"), b"x")
    write(os.path.join(d, "tile", "0", "x000", "005"), b"x")
    write(os.path.join(d, "checkpoints", "300.tmp"), b"x")
    s = lv.check_tree(d, kv)
    if sorted(s["unrecognised_files"]) != ["checkpoints/300.tmp", "tile/0/000.tmp", "tile/0/x000/005"]:
        failures.append(f"unrecognised files not reported: {s['unrecognised_files']}")

    # random single-byte flips anywhere in a log's files are always detected
    d = os.path.join(tmp, "flips")
    build(d, key, entries[:300], [1, 200, 256, 300])
    files = []
    for dirpath, _dirs, names in os.walk(d):
        for name in names:
            if not name.endswith(".vkey"):
                files.append(os.path.join(dirpath, name))
    rng = random.Random(15)
    for _ in range(300):
        path = rng.choice(sorted(files))
        with open(path, "rb") as f:
            size = len(f.read())
        pos = rng.randrange(size)
        mask = rng.randrange(1, 256)
        saved = mutate_file(path, lambda b: flip(b, pos, mask))
        rejects(f"tree with byte {pos} of {os.path.relpath(path, d)} ^ {mask:#04x}", lv.check_tree, d, kv)
        restore(path, saved)
    accepts("tree after the random flips", lv.check_tree, d, kv)


def test_cli(tmp, key, other):
    """The command line itself: exit codes, one-line reasons, --key as file or string."""
    d = os.path.join(tmp, "cli")
    entries = [entry(i) for i in range(300)]
    log = build(d, key, entries, [100, 257, 300])
    vkey_file = os.path.join(d, key.name.replace("/", "_") + ".vkey")
    incl = os.path.join(tmp, "incl.json")
    write(incl, json.dumps(inclusion_doc(log, key, 123, 300)))
    cons = os.path.join(tmp, "cons.json")
    write(cons, json.dumps(consistency_doc(log, key, 100, 300)))
    bad = os.path.join(tmp, "cons-bad.json")
    doc = consistency_doc(log, key, 100, 300)
    doc["proof"][0] = flip_b64(doc["proof"][0], 0)
    write(bad, json.dumps(doc))
    script = os.path.join(HERE, "ledger_verify.py")
    runs = [
        (0, ["checkpoint", "--key", vkey_file, os.path.join(d, "checkpoint")]),
        (0, ["checkpoint", "--key", key.vkey, os.path.join(d, "checkpoints", "100")]),
        (1, ["checkpoint", "--key", other.vkey, os.path.join(d, "checkpoint")]),
        (0, ["inclusion", "--key", vkey_file, incl]),
        (0, ["consistency", "--key", vkey_file, "--dir", d, cons]),
        (1, ["consistency", "--key", vkey_file, bad]),
        (0, ["tree", "--key", vkey_file, d]),
        (1, ["tree", "--key", other.vkey, d]),
    ]
    for want, argv in runs:
        r = subprocess.run([sys.executable, script] + argv, capture_output=True, text=True)
        if r.returncode != want:
            failures.append(f"CLI {argv[0]}: exit {r.returncode}, wanted {want}: {r.stderr.strip()}")
        elif want == 1 and (r.stderr.count("\n") != 1 or not r.stderr.startswith("ledger_verify: ")):
            failures.append(f"CLI {argv[0]}: failure reason is not one line: {r.stderr!r}")
        elif want == 0 and argv[0] == "checkpoint" and "size: " not in r.stdout:
            failures.append(f"CLI checkpoint printed {r.stdout!r}")
        else:
            counts["accepted" if want == 0 else "rejected"] += 1


def main():
    started = time.monotonic()
    key = Key("selftest.gridminer.example/ledger")
    other = Key("witness.example/w1")
    with tempfile.TemporaryDirectory(prefix="ledger-verify-selftest-") as tmp:
        test_reference_vectors()
        test_canonical_json()
        test_keys_and_notes(key, other)
        test_proofs(tmp, key, other)
        test_trees(tmp, key, other)
        test_cli(tmp, key, other)
    elapsed = time.monotonic() - started
    for f in failures:
        print(f"FAIL: {f}")
    print(f"{counts['accepted']} valid inputs accepted, {counts['rejected']} tampered inputs rejected, "
          f"{len(failures)} failures, {elapsed:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
