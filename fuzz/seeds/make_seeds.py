#!/usr/bin/env python3
"""Writes the seed inputs of gridminer's fuzz targets into fuzz/corpus/<target>/, from the
repository's own examples (README, unit and integration tests, the SunSpec test server's
register map, the shipped configs). Run from anywhere; it adds the seeds beside what a corpus
holds already. Then minimise with `cargo fuzz cmin -O -a -s none <target> -- -use_counters=0`.

Each target's input format is documented on its body in fuzz/src/lib.rs. Tokens are signed
here with `cryptography` and `hmac`, independently of gridminer's own code, with the keys
the operator target configures (HS256 secret, Ed25519 seed [7] * 32).
"""
import base64
import hashlib
import hmac
import json
import pathlib
import struct

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

FUZZ = pathlib.Path(__file__).resolve().parent.parent
REPO = FUZZ.parent
NOW = 1_700_000_000
HS256_SECRET = b"fuzz-hs256-secret-of-at-least-32-bytes"
ED25519 = Ed25519PrivateKey.from_private_bytes(bytes([7] * 32))


def out(target, name, data):
    d = FUZZ / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jws(header, claims, eddsa):
    signing_input = (b64(header) + "." + b64(claims)).encode()
    if eddsa:
        sig = ED25519.sign(signing_input)
    else:
        sig = hmac.new(HS256_SECRET, signing_input, hashlib.sha256).digest()
    return signing_input + b"." + b64(sig).encode()


def operator():
    base = {"aud": "site-a", "iat": NOW, "exp": NOW + 30}
    commands = [
        {"act": "curtail", "limit_w": 250000.0},
        {"act": "curtail", "limit_w": 0, "until": NOW + 600},
        {"act": "setpoint", "setpoint_w": 1e6, "until": NOW + 900},
        {"act": "release"},
        {"act": "heartbeat"},
        {"act": "curtail", "by_w": 5000},
        {"act": "curtail", "limit_w": 1e30},
    ]
    for i, c in enumerate(commands):
        for iss, eddsa, mode in [("agg", False, 1), ("tso", True, 2)]:
            claims = dict(base, iss=iss, jti=f"c-{i}", **c)
            if i == 2:
                claims["aud"] = ["other", "site-a"]
                claims["nbf"] = NOW - 5
            body = json.dumps(claims, separators=(",", ":")).encode()
            alg = "EdDSA" if eddsa else "HS256"
            header = json.dumps({"alg": alg, "typ": "JWT"}).encode()
            out("operator", f"claims-{alg}-{i}", bytes([mode]) + body)
            out("operator", f"header-{alg}-{i}", bytes([mode + 2]) + header + b"\0" + body)
            out("operator", f"token-{alg}-{i}", b"\0" + jws(header, body, eddsa))
    # Refusals as the README lists them: none, wrong algorithm, expired, wrong audience.
    claims = json.dumps(dict(base, iss="tso", jti="r", act="release")).encode()
    out("operator", "alg-none", b"\0" + b64(b'{"alg":"none"}').encode() + b"." + b64(claims).encode() + b".")
    out("operator", "alg-confusion", b"\0" + jws(b'{"alg":"HS256"}', claims, False))
    out("operator", "crit", bytes([3]) + b'{"alg":"HS256","crit":["exp"]}\0' + claims)
    out("operator", "expired", bytes([1]) + json.dumps(dict(base, iss="agg", jti="e", act="release", exp=NOW - 60, iat=NOW - 90)).encode())
    out("operator", "trailing-newline", b"\0" + jws(b'{"alg":"EdDSA"}', claims, True) + b"\n")


def mqtt_signal():
    # The first byte picks the topic in sorted order (see mqtt_signal in fuzz/src/lib.rs).
    topics = ["hashprice", "hz", "load", "meter", "mining", "price", "pv", "schedule",
              "schedule_kwh", "wind", "not/mapped"]
    rows = [
        ("pv", b"12.5"), ("pv", b" 3 \n"), ("pv", b"NaN"), ("pv", b"1e308"),
        ("meter", b'{"w": -420.5, "v": 230}'), ("meter", b'{"w": "17"}'), ("meter", b'{"v": 230}'),
        ("hz", b"49.98"), ("price", b"0.042"), ("load", b"-5"),
        ("wind", b'{"value": 0.8}'), ("mining", b'{"p": 3.5}'), ("hashprice", b'{"v": 0.05}'),
        ("schedule", b'[{"start":"2018-06-01T00:00:00Z","price":50},{"start":1527814800,"price":-10}]'),
        ("schedule", b'[{"start":"2023-11-14T22:00:00Z","price":80.5},{"start":"2023-11-14T23:00:00+01:00","price":-500}]'),
        ("schedule", b'[{"start":1700000000,"price":1},{"start":1700003600,"price":2},{"start":1700007200,"price":3}]'),
        ("schedule_kwh", b'[{"start":1699999200,"price":0.12}]'),
        ("not/mapped", b"1"),
    ]
    for i, (topic, payload) in enumerate(rows):
        out("mqtt_signal", f"{i:02}-{topic.replace('/', '_')}", bytes([topics.index(topic)]) + payload)


def words(ws):
    return b"".join(struct.pack(">H", w & 0xFFFF) for w in ws)


def model(mid, length, points):
    block = [0] * (length + 2)
    block[0], block[1] = mid, length
    for at, v in points.items():
        block[at] = v & 0xFFFF
    return block


def modbus():
    # The SunSpec test server's map (tests/modbus/sunspec_server.py): SunS, model 1,
    # model 103, model 203, end; values as that server starts with.
    common = model(1, 66, {})
    inverter = model(103, 50, {14: 12345, 15: -1, 16: 5001, 17: -2, 24: 0x000F, 25: 0x1206, 26: 1})
    meter = model(203, 105, {16: 4998, 17: -2, 18: -150, 22: 1})
    der = model(701, 121, {10: 5000, 116: 0, 17: 0, 18: 50000, 115: -3, 19: 0, 20: 0, 21: 0, 22: 1000, 120: 0})
    end = [0xFFFF, 0]
    suns = [0x5375, 0x6E53]
    chain = suns + common + inverter + meter + end
    for role in range(4):
        out("modbus", f"server-map-40000-role{role}", bytes([role]) + words(chain))
    out("modbus", "server-map-base0-meter", bytes([2 | 4]) + words(chain))
    out("modbus", "server-map-50000-pv", bytes([0 | 8]) + words(chain))
    out("modbus", "der-701-pv", bytes([0]) + words(suns + common + der + end))
    out("modbus", "other-base-site-load", bytes([3 | 12]) + words([40000]) + words(chain))
    # Sentinels: W not implemented, scale factor not implemented.
    out("modbus", "sentinels", bytes([0]) + words(suns + model(103, 50, {14: 0x8000, 15: 0x8000, 16: 0xFFFF}) + end))
    # A raw register block as the server's input registers hold it (30775...).
    out("modbus", "raw-input", bytes([12]) + words([30775]) + words([0xFFFF, 0xF63C, 0x1170, 0x0001, 0x4247, 0xCCCD, (-42) & 0xFFFF, 4321]))


def stratum():
    notify = ('{"id":null,"method":"mining.notify","params":["bf","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000",'
              '"01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008",'
              '"072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",'
              '[],"00000002","1c2ac4af","504e86b9",false]}')
    branches = ('{"method":"mining.notify","params":["2","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","01","02",'
                '["' + "ab" * 32 + '","' + "cd" * 32 + '"],"20000000","1c2ac4af","504e86b9",true]}')
    session = "\n".join([
        '{"id":1,"result":{"version-rolling":true,"version-rolling.mask":"1fffe000"},"error":null}',
        '{"id":2,"result":[[["mining.set_difficulty","1"],["mining.notify","ae68"]],"08000002",4],"error":null}',
        '{"id":3,"result":true,"error":null}',
        '{"id":null,"method":"mining.set_difficulty","params":[0.5]}',
        notify,
        '{"id":4,"result":null,"error":[23,"Low difficulty share",null]}',
        '{"id":5,"result":false,"error":{"code":21,"message":"Job not found"}}',
        '{"id":null,"method":"mining.set_version_mask","params":["00ffe000"]}',
        branches,
        '{"id":null,"method":"client.show_message","params":["hi"]}',
    ]) + "\n"
    out("stratum", "session", session)
    out("stratum", "notify", notify + "\r\n")
    out("stratum", "refused", '{"id":3,"result":false,"error":[24,"Unauthorized worker",null]}\n')
    out("stratum", "hostile", '{"method":"mining.set_difficulty","params":[1e-9]}\n\xff\xfe\n{"id":"x","result":true}\n')


def configs():
    for p in sorted((REPO / "simulations").glob("*.toml")):
        out("scenario_config", p.name, p.read_bytes())
    # tests/it/bad_input.rs's tiny scenario, with its policy inline.
    tiny = (REPO / "tests/it/bad_input.rs").read_text().split('const GOOD_SCENARIO: &str = r#"')[1].split('"#;')[0]
    out("scenario_config", "tiny.toml", tiny.replace('"POLICY"', '"../policies/economic.toml"'))
    for p in sorted((REPO / "deploy/examples").glob("*.toml")):
        out("site_config", p.name, p.read_bytes())
    # The embedded example with every other section a site can have, as the module docs
    # of signal/modbus/config.rs and signal/operator/config.rs show them.
    every = (REPO / "deploy/examples/embedded.toml").read_text() + """
operator_clock_skew = "5s"
operator_replay_cache = "replay.json"
[[operators]]
id = "tso-north"
alg = "EdDSA"
public_key = "MCowBQYDK2VwAyEAGX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE="
max_lifetime = "60s"
[operator_heartbeat]
timeout = "90s"
failsafe_limit = "0 W"
operators = ["tso-north"]
[[signals]]
topic = "demo/hz"
quantity = "grid_frequency"
[[signals]]
topic = "demo/hashprice"
quantity = "hashprice"
unit = "EUR/TH/day"
[[modbus]]
name = "meter"
kind = "raw"
host = "192.0.2.11"
registers = [
  { quantity = "grid_power", address = 30775, type = "i32", word_order = "big", scale = 1.0, unit = "W", table = "input" },
  { quantity = "grid_frequency", address = 30779, type = "f32", word_order = "little", unit = "Hz" },
]
[[modbus]]
name = "inverter"
kind = "sunspec"
role = "pv"
host = "192.0.2.10"
port = 502
unit_id = 1
poll = "1s"
timeout = "500ms"
backoff_min = "1s"
backoff_max = "30s"
[[loads]]
kind = "mqtt"
topic = "site/containers/setpoint"
name = "containers"
count = 4
rated_power = "3250 W"
hashrate = "95 TH/s"
min_power = "2000 W"
wake = "90s"
[metrics]
listen = "127.0.0.1:9464"
[influx]
url = "http://127.0.0.1:8086"
org = "site"
bucket = "gridminer"
token_file = "influx-token"
buffer_dir = "buffer"
buffer_max_bytes = "64 MiB"
"""
    out("site_config", "every-section.toml", every.replace(
        'hashrate_per_core = "30 MH/s"',
        'hashrate_per_core = "30 MH/s"\npool = { url = "stratum+tcp://127.0.0.1:3333", user = "u" }'))


if __name__ == "__main__":
    # Adds (or rewrites) the seed files only: a corpus grown by fuzzing stays.
    operator()
    mqtt_signal()
    modbus()
    stratum()
    configs()
