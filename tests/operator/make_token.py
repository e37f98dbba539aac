#!/usr/bin/env python3
"""Signs a JWT with PyJWT: an implementation independent of gridminer's, for the
operator-command tests (tests/it/operator.rs).

usage:
  make_token.py ALG KEY CLAIMS_JSON   print the token
  make_token.py pubkey SEED_HEX       print the Ed25519 public key as PEM (SPKI)

ALG is passed to PyJWT as is ("EdDSA", "HS256", "none"). KEY is, for EdDSA, the 32-byte
private seed in hex; for HS256 the secret as text, or "hex:..." for raw bytes; for none
it is ignored.
"""
import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def key_for(alg, key):
    if alg == "EdDSA":
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key))
    if alg == "none":
        return None
    if key.startswith("hex:"):
        return bytes.fromhex(key[4:])
    return key


def main(argv):
    if len(argv) == 2 and argv[0] == "pubkey":
        public = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(argv[1])).public_key()
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        sys.stdout.write(pem.decode())
        return 0
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    alg, key, claims = argv
    print(jwt.encode(json.loads(claims), key_for(alg, key), algorithm=alg))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
