#!/usr/bin/env python3
"""Independent verifier for gridminer's tamper-evident ledger (issue 15).

Written from the public specifications only, so that it shares no code (and no
misreading) with the Rust implementation it checks:

  * RFC 6962 §2.1 / RFC 9162 §2.1.1  Merkle Tree Hash (MTH), leaf and node hashing
  * RFC 9162 §2.1.3.2                 verifying an inclusion proof
  * RFC 9162 §2.1.4.2                 verifying a consistency proof
  * c2sp.org/signed-note              the note, its signature lines, Ed25519 key IDs, vkeys
  * c2sp.org/tlog-checkpoint          the checkpoint note text (origin, size, root, extensions)
  * c2sp.org/tlog-tiles               hash tiles, entry bundles, their paths, partial tiles
  * RFC 8785                          canonical JSON of every entry (ECMAScript numbers)

Only the standard library and `cryptography` (for Ed25519) are used. Every check
raises VerifyError with a one-line reason; the command line prints it on stderr and
exits 1, or exits 0 when everything verifies.

Subcommands:
  checkpoint  --key K FILE            signature and parse of one checkpoint
  inclusion   --key K PROOF.json      output of `gridminer ledger prove DIR --entry N`
  consistency --key K [--dir DIR] PROOF.json
                                      output of `gridminer ledger consistency DIR --from M`
  tree        --key K DIR             the whole ledger directory
K is a vkey string `name+hexid+base64` or a file holding one (the `<name>.vkey`).
"""

import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

HASH_LEN = 32
# c2sp.org/tlog-tiles: tiles are height 8, i.e. up to 256 hashes (or entries) wide.
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
# c2sp.org/signed-note: signature type byte for Ed25519.
SIG_TYPE_ED25519 = 0x01
EM_DASH_SPACE = "\u2014 "


class VerifyError(Exception):
    """A check failed; the message is the one-line reason shown to the user."""


# ---------------------------------------------------------------------------
# Hashing: RFC 6962 §2.1 (restated in RFC 9162 §2.1.1). The 0x00 / 0x01 prefixes
# are the domain separation between leaves and interior nodes.


def sha256(data):
    return hashlib.sha256(data).digest()


def leaf_hash(entry):
    return sha256(b"\x00" + entry)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


# MTH({}) = SHA-256() -- the root of the empty tree (RFC 6962 §2.1).
EMPTY_ROOT = sha256(b"")


def b64decode_strict(text, what):
    """Standard base64 (RFC 4648 §4), rejecting anything that is not the one canonical
    encoding: a decoder that ignored stray padding bits would let a flipped character
    in a signature or hash go unnoticed."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise VerifyError(f"{what}: not base64") from None
    if not isinstance(text, str):
        raise VerifyError(f"{what}: expected a base64 string, got {type(text).__name__}")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VerifyError(f"{what}: not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise VerifyError(f"{what}: not canonical base64")
    return raw


def b64hash(text, what):
    raw = b64decode_strict(text, what)
    if len(raw) != HASH_LEN:
        raise VerifyError(f"{what}: {len(raw)} bytes, a SHA-256 hash has {HASH_LEN}")
    return raw


def b64(raw):
    return base64.b64encode(raw).decode("ascii")


# ---------------------------------------------------------------------------
# Verifier keys and signed notes: c2sp.org/signed-note.


def key_id(name, sig_type, public):
    """key ID = SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    return sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public)[:4]


def valid_key_name(name):
    # "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or plus".
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


class VerifierKey:
    def __init__(self, name, kid, public):
        self.name = name
        self.id = kid
        self.public = public
        self.ed25519 = Ed25519PublicKey.from_public_bytes(public)


def parse_vkey(text):
    """`<name>+<8 hex digits key ID>+<base64(0x01 || 32-byte Ed25519 public key)>`.
    The ID is recomputed from name and key and must match the one written."""
    text = text.strip()
    # The name cannot contain '+', but base64 can: split the first two only.
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise VerifyError("verifier key: expected name+keyid+base64key")
    name, hexid, keyb64 = parts
    if not valid_key_name(name):
        raise VerifyError(f"verifier key: invalid key name {name!r}")
    if not re.fullmatch(r"[0-9a-fA-F]{8}", hexid):
        raise VerifyError(f"verifier key: key id {hexid!r} is not 8 hex digits")
    raw = b64decode_strict(keyb64, "verifier key")
    if len(raw) != 33 or raw[0] != SIG_TYPE_ED25519:
        raise VerifyError("verifier key: not 0x01 followed by a 32-byte Ed25519 key")
    public = raw[1:]
    kid = key_id(name, SIG_TYPE_ED25519, public)
    if kid != bytes.fromhex(hexid):
        raise VerifyError(
            f"verifier key: key id {hexid} does not match SHA-256(name||0x0A||0x01||key)[:4] = {kid.hex()}"
        )
    return VerifierKey(name, kid, public)


def load_key(arg):
    """--key takes the vkey string itself or a file containing it."""
    if os.path.isfile(arg):
        try:
            with open(arg, "r", encoding="utf-8") as f:
                return parse_vkey(f.read())
        except (OSError, UnicodeDecodeError) as e:
            raise VerifyError(f"verifier key file {arg}: {e}") from None
    return parse_vkey(arg)


def open_note(data, key, what):
    """Verify a signed note against `key`; return its text (with the final newline).

    signed-note: text ending in newline, a blank line, then one or more lines
    "— <key name> <base64(key ID || signature)>\\n". The text is separated from the
    signatures by the LAST empty line. Signatures whose (name, ID) is not the key's are
    ignored; one from the key that fails is a failure; at least one must verify."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        whole = data.decode("utf-8")
    except UnicodeDecodeError:
        raise VerifyError(f"{what}: not valid UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in whole):
        raise VerifyError(f"{what}: contains an ASCII control character other than newline")
    split = whole.rfind("\n\n")
    if split < 0:
        raise VerifyError(f"{what}: no blank line before the signatures")
    text = whole[: split + 1]
    sigs = whole[split + 2 :]
    if not sigs or not sigs.endswith("\n"):
        raise VerifyError(f"{what}: no signature lines, or the last one lacks its newline")
    verified = 0
    for line in sigs[:-1].split("\n"):
        if not line.startswith(EM_DASH_SPACE):
            raise VerifyError(f"{what}: malformed signature line {line[:40]!r}")
        fields = line[len(EM_DASH_SPACE) :].split(" ")
        if len(fields) != 2 or not valid_key_name(fields[0]):
            raise VerifyError(f"{what}: malformed signature line {line[:40]!r}")
        name, sigb64 = fields
        sig = b64decode_strict(sigb64, f"{what}: signature of {name}")
        if len(sig) < 4:
            raise VerifyError(f"{what}: signature of {name} is shorter than its key ID")
        if name != key.name or sig[:4] != key.id:
            continue  # another key's signature (a witness, a rotated key): ignored
        if len(sig) != 4 + 64:
            raise VerifyError(f"{what}: signature of {name} is not 64 bytes of Ed25519")
        try:
            key.ed25519.verify(sig[4:], text.encode("utf-8"))
        except InvalidSignature:
            raise VerifyError(f"{what}: invalid signature by {key.name}+{key.id.hex()}") from None
        verified += 1
    if verified == 0:
        raise VerifyError(f"{what}: no signature by {key.name}+{key.id.hex()}")
    return text


class Checkpoint:
    def __init__(self, origin, size, root, extensions, text):
        self.origin = origin
        self.size = size
        self.root = root
        self.extensions = extensions
        self.text = text


def parse_checkpoint(text, what):
    """c2sp.org/tlog-checkpoint: at least three non-empty lines -- origin, tree size in
    decimal with no leading zeroes, base64 root hash -- then optional non-empty
    extension lines, which are accepted and otherwise ignored."""
    lines = text[:-1].split("\n")  # open_note guarantees the final newline
    if len(lines) < 3:
        raise VerifyError(f"{what}: fewer than three lines (origin, size, root)")
    origin, size_s, root_s = lines[:3]
    if not origin:
        raise VerifyError(f"{what}: empty origin line")
    if not re.fullmatch(r"0|[1-9][0-9]*", size_s):
        raise VerifyError(f"{what}: tree size {size_s!r} is not a decimal without leading zeroes")
    root = b64hash(root_s, f"{what}: root hash")
    ext = lines[3:]
    if any(not e for e in ext):
        raise VerifyError(f"{what}: empty extension line")
    return Checkpoint(origin, int(size_s), root, ext, text)


def read_checkpoint(data, key, what):
    return parse_checkpoint(open_note(data, key, what), what)


# ---------------------------------------------------------------------------
# Proof verification: RFC 9162 §2.1.3.2 and §2.1.4.2, step by step.


def skip_promoted_levels(fn, sn):
    """RFC 9162 §2.1.3.2 step 4 / §2.1.4.2 step 6: "right-shift both fn and sn equally
    until either LSB(fn) is set or fn is 0" -- the levels where the rightmost node was
    promoted without a sibling, so the proof holds no hash for them."""
    while fn & 1 == 0 and fn != 0:
        fn >>= 1
        sn >>= 1
    return fn, sn


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 §2.1.3.2: recompute the root from the leaf hash and its audit path
    (leaf upward), steering by the bits of the leaf's index and of the last index."""
    if index >= size:  # step 1
        raise VerifyError(f"inclusion: leaf index {index} is not below tree size {size}")
    fn, sn = index, size - 1  # step 2
    r = leaf  # step 3
    for p in proof:  # step 4
        if sn == 0:
            raise VerifyError("inclusion: proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            # p is a left sibling (or we are the rightmost node and it is the left one)
            r = node_hash(p, r)
            if not fn & 1:
                fn, sn = skip_promoted_levels(fn, sn)
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 5
        raise VerifyError("inclusion: proof is shorter than the path to the root")
    if r != root:
        raise VerifyError("inclusion: the proof does not lead to the checkpoint's root")


def is_power_of_two(n):
    return n > 0 and n & (n - 1) == 0


def verify_consistency(first, second, first_hash, second_hash, proof):
    """RFC 9162 §2.1.4.2: from the proof, recompute both the old root (fr) and the new
    root (sr) at once; the tree of size `first` is then a prefix of the tree of size
    `second`.

    Two edge cases the algorithm itself does not cover (its step 1 fails an empty
    proof) are taken from RFC 9162 §2.1.4.1, where PROOF(m, D[m]) is empty:
      * first == second: the proof must be empty and the roots equal;
      * first == 0: the empty tree is a prefix of every tree, the proof must be empty
        and the old root must be MTH({}) = SHA-256().
    """
    if first > second:
        raise VerifyError(f"consistency: old size {first} is larger than new size {second}")
    if first == second:
        if proof:
            raise VerifyError("consistency: proof between equal sizes must be empty")
        if first_hash != second_hash:
            raise VerifyError("consistency: equal sizes but different roots")
        return
    if first == 0:
        if proof:
            raise VerifyError("consistency: proof from the empty tree must be empty")
        if first_hash != EMPTY_ROOT:
            raise VerifyError("consistency: old root of the empty tree is not SHA-256()")
        return
    if not proof:  # step 1
        raise VerifyError("consistency: empty proof")
    path = list(proof)
    if is_power_of_two(first):  # step 2: the old tree is a full left subtree, not sent
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1  # step 3
    while fn & 1:  # step 4: skip the levels where the old tree's last node is a right child
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise VerifyError("consistency: proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                fn, sn = skip_promoted_levels(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # step 7
    if sn != 0:
        raise VerifyError("consistency: proof is shorter than needed")
    if fr != first_hash:
        raise VerifyError("consistency: proof does not lead to the old root")
    if sr != second_hash:
        raise VerifyError("consistency: proof does not lead to the new root")


# ---------------------------------------------------------------------------
# Proof documents as `gridminer ledger prove` / `ledger consistency` print them.


def load_json_file(path):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise VerifyError(f"{path}: cannot read proof JSON: {e}") from None


def field(doc, name, kind):
    if not isinstance(doc, dict) or name not in doc:
        raise VerifyError(f"proof JSON: missing field {name!r}")
    v = doc[name]
    if kind is int:
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
    else:
        ok = isinstance(v, kind)
    if not ok:
        raise VerifyError(f"proof JSON: field {name!r} has the wrong type")
    return v


def proof_hashes(doc):
    return [b64hash(h, f"proof hash {i}") for i, h in enumerate(field(doc, "proof", list))]


def signed_head(doc, key, size, root, what):
    """The checkpoint in the document must verify and state exactly this size and root."""
    cp = read_checkpoint(field(doc, "checkpoint", str), key, f"{what} checkpoint")
    if cp.size != size:
        raise VerifyError(f"{what}: checkpoint is for size {cp.size}, proof for {size}")
    if cp.root != root:
        raise VerifyError(f"{what}: checkpoint root differs from the proof's root")
    return cp


def check_inclusion_doc(doc, key):
    index = field(doc, "index", int)
    size = field(doc, "tree_size", int)
    root = b64hash(field(doc, "root", str), "root")
    signed_head(doc, key, size, root, "inclusion")
    entry = b64decode_strict(field(doc, "entry", str), "entry")
    leaf = b64hash(field(doc, "leaf_hash", str), "leaf_hash")
    if leaf_hash(entry) != leaf:
        raise VerifyError("inclusion: leaf_hash is not SHA-256(0x00 || entry)")
    verify_inclusion(index, size, leaf, proof_hashes(doc), root)
    return index, size


def check_consistency_doc(doc, key, ledger_dir=None):
    first = field(doc, "from", int)
    second = field(doc, "to", int)
    first_root = b64hash(field(doc, "from_root", str), "from_root")
    second_root = b64hash(field(doc, "to_root", str), "to_root")
    signed_head(doc, key, second, second_root, "consistency")
    verify_consistency(first, second, first_root, second_root, proof_hashes(doc))
    if ledger_dir is not None:
        # The old head must be one the log really signed: checkpoints/<from>.
        path = os.path.join(ledger_dir, "checkpoints", str(first))
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise VerifyError(f"consistency: cannot read {path}: {e.strerror}") from None
        old = read_checkpoint(data, key, f"checkpoints/{first}")
        if old.size != first:
            raise VerifyError(f"checkpoints/{first} states size {old.size}")
        if old.root != first_root:
            raise VerifyError(f"checkpoints/{first} root differs from the proof's from_root")
    return first, second


# ---------------------------------------------------------------------------
# The ledger directory: c2sp.org/tlog-tiles.


def index_path(n):
    """tlog-tiles: N in zero-padded 3-digit path elements, all but the last prefixed
    with 'x' (1234067 -> x001/x234/067, 5 -> 005)."""
    groups = [n % 1000]
    n //= 1000
    while n:
        groups.append(n % 1000)
        n //= 1000
    groups.reverse()
    return "/".join([f"x{g:03d}" for g in groups[:-1]] + [f"{groups[-1]:03d}"])


def tile_path(level, n, width):
    """`tile/<L>/<N>[.p/<W>]`, level "entries" for entry bundles; width 256 is full."""
    p = f"tile/{level}/{index_path(n)}"
    return p if width == TILE_WIDTH else f"{p}.p/{width}"


TILE_RE = re.compile(r"tile/(entries|0|[1-9][0-9]*)/((?:x[0-9]{3}/)*[0-9]{3})(?:\.p/([1-9][0-9]*))?")


def parse_tile_path(rel):
    """(level or 'entries', N, width) for a canonical tile path, else None."""
    m = TILE_RE.fullmatch(rel)
    if not m:
        return None
    level = m.group(1) if m.group(1) == "entries" else int(m.group(1))
    if level != "entries" and level > 63:
        return None
    n = int(m.group(2).replace("x", "").replace("/", ""))
    width = int(m.group(3)) if m.group(3) else TILE_WIDTH
    if (m.group(3) and width >= TILE_WIDTH) or tile_path(level, n, width) != rel:
        return None  # e.g. .p/256, or x000/005 for 5: not the one encoding of N
    return level, n, width


def parse_bundle(data, what):
    """Entry bundle: a sequence of big-endian uint16 length-prefixed entries."""
    entries = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise VerifyError(f"{what}: truncated length prefix at byte {pos}")
        n = int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 + n > len(data):
            raise VerifyError(f"{what}: entry {len(entries)} runs past the end of the bundle")
        entries.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return entries


class NotJson(ValueError):
    """Accepted by Python's json module but not JSON: NaN, Infinity, duplicate keys."""


def _object_without_duplicate_keys(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise NotJson("duplicate key in an object")
    return obj


def _reject_constant(name):
    raise NotJson(f"{name} is not JSON")


# One decoder for all entries (building one per entry costs more than the parsing on
# a year of entries).
_DECODER = json.JSONDecoder(object_pairs_hook=_object_without_duplicate_keys, parse_constant=_reject_constant)


def es_number(x):
    """A finite float as ECMAScript's Number::toString writes it, which RFC 8785
    §3.2.2.3 makes the canonical form of a JSON number.

    With s the shortest digit string that round-trips (k digits; Python's repr finds
    the same digits) and n such that x = s * 10^(n-k):
      k <= n <= 21     digits then n-k zeros            (1e20 -> 100000000000000000000)
      0 < n <= 21      a point after n digits           (123.456)
      -6 < n <= 0      "0." then -n zeros then digits   (0.000001)
      otherwise        d[.ddd]e+/-(n-1)                 (1e+21, 1e-7, 1.5e+300)"""
    if x != x or x in (float("inf"), float("-inf")):
        raise NotJson("a non-finite number is not JSON")
    if x == 0:
        return "0"  # -0 included
    if x < 0:
        return "-" + es_number(-x)
    mantissa, _, exp = repr(x).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    lead = len(digits) - len(digits.lstrip("0"))
    s = digits[lead:].rstrip("0")
    k = len(s)
    n = len(whole) - lead + (int(exp) if exp else 0)
    if k <= n <= 21:
        return s + "0" * (n - k)
    if 0 < n <= 21:
        return s[:n] + "." + s[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + s
    e = n - 1
    sign = "+" if e >= 0 else "-"
    return (s if k == 1 else s[0] + "." + s[1:]) + "e" + sign + str(abs(e))


def canonical_json(value):
    """RFC 8785 (JCS) §3.2: no whitespace; object members sorted by the UTF-16 code
    units of their names; strings with only the escapes JSON requires (json.dumps with
    ensure_ascii=False writes exactly those: the short escapes for quote, backslash,
    backspace, tab, newline, form feed and carriage return, \\u00xx in lower case for
    the other controls, everything else as UTF-8); numbers as es_number. Integers are
    kept exact, as gridminer (and json.dumps) write them, not rounded through a double."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return es_number(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if all(k.isascii() for k in value):
        members = sorted(value.items())  # code points and UTF-16 code units order ASCII alike
    else:
        members = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
    return "{" + ",".join(_json_string(k) + ":" + canonical_json(v) for k, v in members) + "}"


# What json.dumps(s, ensure_ascii=False) calls, without building an encoder per string.
_json_string = json.encoder.encode_basestring


def check_canonical_json(entry, index):
    """Each entry must be canonical JSON: it parses, and serialising it again in the
    RFC 8785 form gives back exactly the same bytes."""
    what = f"entry {index}"
    try:
        text = entry.decode("utf-8")
    except UnicodeDecodeError:
        raise VerifyError(f"{what}: not valid UTF-8") from None
    try:
        value = _DECODER.decode(text)
        again = canonical_json(value).encode("utf-8")
    except NotJson as e:
        raise VerifyError(f"{what}: {e}") from None
    except UnicodeEncodeError:
        raise VerifyError(f"{what}: contains a lone surrogate escape") from None
    except ValueError as e:
        raise VerifyError(f"{what}: not JSON: {e}") from None
    if again != entry:
        i = next((k for k in range(min(len(again), len(entry))) if again[k] != entry[k]), min(len(again), len(entry)))
        got = entry[max(0, i - 12) : i + 12].decode("utf-8", "replace")
        want = again[max(0, i - 12) : i + 12].decode("utf-8", "replace")
        raise VerifyError(f"{what}: not canonical JSON (RFC 8785) at byte {i}: has {got!r}, canonical form {want!r}")


class Tree:
    """Every full-subtree hash of a list of leaf hashes, by height: nodes[h][i] is the
    MTH of leaves [i*2^h, (i+1)*2^h). Tile hashes and the root of any prefix are read
    off it without rehashing."""

    def __init__(self, leaves):
        self.size = len(leaves)
        self.nodes = [list(leaves)]
        while len(self.nodes[-1]) > 1:
            below = self.nodes[-1]
            self.nodes.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])

    def level(self, h):
        return self.nodes[h] if h < len(self.nodes) else []

    def root(self, size):
        """MTH of the first `size` leaves (RFC 6962 §2.1). Its recursion splits off
        the largest power of two k < n as a full left subtree, so the tree is the
        perfect subtrees of size's binary digits, largest first, folded right to left."""
        if size == 0:
            return EMPTY_ROOT
        subtrees = []
        start = 0
        for h in range(size.bit_length() - 1, -1, -1):
            if size >> h & 1:
                subtrees.append(self.nodes[h][start >> h])
                start += 1 << h
        r = subtrees[-1]
        for left in reversed(subtrees[:-1]):
            r = node_hash(left, r)
        return r


def read_file(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise VerifyError(f"{what}: cannot read: {e.strerror}") from None


def check_tree(ledger_dir, key):
    """The whole directory against the latest checkpoint: entries, every tile, every
    checkpoint ever made. Returns a summary dict."""
    latest = read_checkpoint(read_file(os.path.join(ledger_dir, "checkpoint"), "checkpoint"), key, "checkpoint")
    size = latest.size

    # Every file under tile/, by what its path says it is.
    present = {}
    odd = []
    tile_root = os.path.join(ledger_dir, "tile")
    for dirpath, _dirs, files in os.walk(tile_root):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), ledger_dir).replace(os.sep, "/")
            parsed = parse_tile_path(rel)
            if parsed is None:
                odd.append(rel)
            else:
                present[parsed] = rel

    def need(level, n, width):
        """tlog-tiles: the tile the checkpoint size implies MUST be there; a client may
        fall back to the full tile when a partial one is gone."""
        if (level, n, width) in present:
            return present[(level, n, width)], width
        if (level, n, TILE_WIDTH) in present:
            return present[(level, n, TILE_WIDTH)], TILE_WIDTH
        raise VerifyError(f"missing {tile_path(level, n, width)} (implied by checkpoint size {size})")

    # Entries 0..size from the bundles the checkpoint implies.
    entries = []
    for n in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
        width = min(TILE_WIDTH, size - n * TILE_WIDTH)
        rel, have = need("entries", n, width)
        got = parse_bundle(read_file(os.path.join(ledger_dir, rel), rel), rel)
        if have == width and len(got) != width:
            raise VerifyError(f"{rel}: holds {len(got)} entries, expected {width}")
        if len(got) < width:
            raise VerifyError(f"{rel}: holds {len(got)} entries, fewer than {width}")
        entries.extend(got[:width])
    for i, e in enumerate(entries):
        check_canonical_json(e, i)

    tree = Tree([leaf_hash(e) for e in entries])
    if tree.root(size) != latest.root:
        raise VerifyError(f"checkpoint: root is not the Merkle tree hash of the {size} entries")

    # The hash tiles the checkpoint size implies: at level L, floor(size / 256^L)
    # hashes, in full tiles and one partial tile of the remainder.
    level = 0
    while size >> (TILE_HEIGHT * level):
        count = size >> (TILE_HEIGHT * level)
        for n in range(count // TILE_WIDTH):
            need(level, n, TILE_WIDTH)
        if count % TILE_WIDTH:
            need(level, count // TILE_WIDTH, count % TILE_WIDTH)
        level += 1

    # Now every tile and bundle present, required or left from an older checkpoint,
    # against the recomputation. What lies beyond the latest checkpoint is signed by
    # nothing and is only counted; its part inside the checkpoint must still agree.
    checked = beyond = 0
    for (level, n, width), rel in sorted(present.items(), key=lambda kv: kv[1]):
        data = read_file(os.path.join(ledger_dir, rel), rel)
        start = n * TILE_WIDTH
        if level == "entries":
            covered = min(width, size - start)
            if covered < width:
                beyond += 1
            if covered <= 0:
                continue
            if covered == width:
                got = parse_bundle(data, rel)
                if len(got) != width:
                    raise VerifyError(f"{rel}: holds {len(got)} entries, expected {width}")
            else:
                try:
                    got = parse_bundle(data, rel)
                except VerifyError:
                    got = []  # a torn tail past the checkpoint; its covered part is checked below
                if len(got) < covered:
                    raise VerifyError(f"{rel}: holds fewer than the {covered} entries the checkpoint covers")
            for i in range(covered):
                if got[i] != entries[start + i]:
                    raise VerifyError(f"{rel}: entry {start + i} differs from the one hashed into the tree")
        else:
            hashes = tree.level(TILE_HEIGHT * level)  # exactly size >> (8 * level) hashes
            covered = min(width, len(hashes) - start)
            if covered < width:
                beyond += 1
            if covered <= 0:
                continue
            if covered == width and len(data) != width * HASH_LEN:
                raise VerifyError(f"{rel}: {len(data)} bytes, expected {width * HASH_LEN}")
            want = b"".join(hashes[start : start + covered])
            if data[: covered * HASH_LEN] != want:
                bad = next(i for i in range(covered) if data[i * HASH_LEN : (i + 1) * HASH_LEN] != hashes[start + i])
                raise VerifyError(f"{rel}: hash {bad} differs from the recomputed tree")
        checked += 1

    # Every checkpoint ever made: signed, named by its size, rooted in the first
    # `size` entries (which also makes each consistent with every other), same origin.
    cp_dir = os.path.join(ledger_dir, "checkpoints")
    try:
        names = sorted(os.listdir(cp_dir))
    except OSError as e:
        raise VerifyError(f"checkpoints/: cannot list: {e.strerror}") from None
    seen = 0
    for name in names:
        what = f"checkpoints/{name}"
        if not re.fullmatch(r"0|[1-9][0-9]*", name):
            odd.append(what)  # e.g. a temporary file a crash left: signed by nothing
            continue
        cp = read_checkpoint(read_file(os.path.join(cp_dir, name), what), key, what)
        if cp.size != int(name):
            raise VerifyError(f"{what}: states tree size {cp.size}")
        if cp.size > size:
            raise VerifyError(f"{what}: larger than the latest checkpoint ({size})")
        if cp.origin != latest.origin:
            raise VerifyError(f"{what}: origin {cp.origin!r} differs from {latest.origin!r}")
        if cp.root != tree.root(cp.size):
            raise VerifyError(f"{what}: root is not the Merkle tree hash of the first {cp.size} entries")
        if cp.size == size and cp.text != latest.text:
            raise VerifyError(f"{what}: differs from the latest checkpoint of the same size")
        seen += 1
    if str(size) not in names:
        raise VerifyError(f"checkpoints/{size}: the latest checkpoint is not kept")

    return {
        "origin": latest.origin,
        "size": size,
        "root": b64(latest.root),
        "entries": len(entries),
        "tiles_checked": checked,
        "tiles_beyond_checkpoint": beyond,
        "checkpoints": seen,
        "unrecognised_files": odd,
    }


# ---------------------------------------------------------------------------
# Command line.


def cmd_checkpoint(args):
    key = load_key(args.key)
    cp = read_checkpoint(read_file(args.file, args.file), key, args.file)
    print(f"origin: {cp.origin}")
    print(f"size: {cp.size}")
    print(f"root: {b64(cp.root)}")


def cmd_inclusion(args):
    key = load_key(args.key)
    index, size = check_inclusion_doc(load_json_file(args.proof), key)
    print(f"ok: entry {index} is included in the signed tree of size {size}")


def cmd_consistency(args):
    key = load_key(args.key)
    first, second = check_consistency_doc(load_json_file(args.proof), key, args.dir)
    print(f"ok: the tree of size {first} is a prefix of the signed tree of size {second}")


def cmd_tree(args):
    key = load_key(args.key)
    s = check_tree(args.dir, key)
    print(
        f"ok: {s['entries']} entries, {s['tiles_checked']} tiles and bundles, "
        f"{s['checkpoints']} checkpoints checked; origin {s['origin']}, size {s['size']}, root {s['root']}"
    )
    if s["tiles_beyond_checkpoint"]:
        print(f"note: {s['tiles_beyond_checkpoint']} tiles reach beyond the latest checkpoint (not covered by a signature)")
    for rel in s["unrecognised_files"]:
        print(f"note: ignored {rel}: not a tlog-tiles path or checkpoint size")


def main(argv=None):
    p = argparse.ArgumentParser(description="Independent verifier of a gridminer ledger (tlog-tiles + signed checkpoints).")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("checkpoint", help="verify one checkpoint's signature and print it")
    c.add_argument("--key", required=True, help="vkey string or file")
    c.add_argument("file")
    c.set_defaults(run=cmd_checkpoint)
    c = sub.add_parser("inclusion", help="verify `gridminer ledger prove` output")
    c.add_argument("--key", required=True, help="vkey string or file")
    c.add_argument("proof", help="proof JSON file")
    c.set_defaults(run=cmd_inclusion)
    c = sub.add_parser("consistency", help="verify `gridminer ledger consistency` output")
    c.add_argument("--key", required=True, help="vkey string or file")
    c.add_argument("--dir", help="ledger directory: also check checkpoints/<from>")
    c.add_argument("proof", help="proof JSON file")
    c.set_defaults(run=cmd_consistency)
    c = sub.add_parser("tree", help="verify a whole ledger directory")
    c.add_argument("--key", required=True, help="vkey string or file")
    c.add_argument("dir")
    c.set_defaults(run=cmd_tree)
    args = p.parse_args(argv)
    try:
        args.run(args)
    except VerifyError as e:
        print(f"ledger_verify: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
