"""pyasic as an independent client of the simulated fleet (tests/it/fleet_emulator.rs).

Reads one request per line on stdin and answers each with one JSON line on stdout:

    data IP          detect the miner (pyasic's MinerFactory), read everything
    pause IP         stop_mining()        -> {"ok": bool}
    resume IP        resume_mining()      -> {"ok": bool}
    limit IP WATTS   set_power_limit()    -> {"ok": bool}

Each request detects the miner afresh, as a scanner would; errors come back as
{"error": "..."} so the Rust side can show them.
"""

import asyncio
import json
import sys
import warnings

warnings.simplefilter("ignore")

import logging  # noqa: E402

import pyasic  # noqa: E402

# pyasic logs a refused command as a warning; the answer line already says so.
logging.getLogger().setLevel(logging.ERROR)


async def detect(ip):
    miner = await pyasic.get_miner(ip)
    if miner is None:
        raise LookupError(f"pyasic found no miner at {ip}")
    return miner


async def handle(words):
    action, ip = words[0], words[1]
    if action == "data":
        miner = await pyasic.get_miner(ip)
        if miner is None:
            return {"found": False}
        d = await miner.get_data()
        return {
            "found": True,
            "class": type(miner).__name__,
            "make": str(d.make) if d.make is not None else None,
            "model": str(d.model) if d.model is not None else None,
            "firmware": str(d.firmware) if d.firmware is not None else None,
            "fw_ver": d.fw_ver,
            "hashrate_ths": float(d.hashrate) if d.hashrate is not None else None,
            "wattage": d.wattage,
            "wattage_limit": d.wattage_limit,
            "is_mining": d.is_mining,
            "hashboards": len(d.hashboards),
            "fans": [f.speed for f in d.fans],
            "mac": d.mac,
        }
    miner = await detect(ip)
    if action == "pause":
        return {"ok": bool(await miner.stop_mining())}
    if action == "resume":
        return {"ok": bool(await miner.resume_mining())}
    if action == "limit":
        return {"ok": bool(await miner.set_power_limit(int(words[2])))}
    raise ValueError(f"unknown action {action!r}")


async def main():
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        words = line.split()
        if not words:
            continue
        try:
            out = await handle(words)
        except Exception as e:  # reported to the test, which fails with it
            out = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
