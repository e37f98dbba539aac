#!/usr/bin/env python3
"""A SunSpec device on 127.0.0.1 for gridminer's Modbus tests: pymodbus serves a register
map that pysunspec2 builds from its own model definitions, so the layout (offsets,
scale factors, "not implemented" sentinels) is SunSpec's, not ours.

Holding registers (function 3), from 40000:
    "SunS" | model 1 (common) | model 103 (three-phase inverter) | model 203 (meter) | 0xFFFF 0
Input registers (function 4), for raw register maps, from 30775:
    30775-30776  int32  big word order      -2500      (grid power, W, export)
    30777-30778  uint32 little word order    70000
    30779-30780  float32 big word order      49.95
    30781        int16                        -42
    30782        uint16                       4321
Every other address answers with exception 2 (illegal data address).

Usage: sunspec_server.py [--port N]    (0, the default, lets the OS pick)
The first line on stdout is the bound port. Then it reads JSON commands, one per line, on
stdin and answers each with a line "ok" (or "error: ..."):
    {"set": [103, "W", 1500]}          raw register value of a point (before its scale factor)
    {"unimplemented": [203, "Hz"]}     the point answers with SunSpec's "not implemented" value
    {"exception": 4}                   every read answers with this exception code; null clears
    {"exit": 0}                        stop serving and exit
End of stdin also exits.
"""

import argparse
import asyncio
import json
import struct
import sys

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from sunspec2 import device as ss_device

BASE = 40000
INPUT_BASE = 30775

# Raw (unscaled) values served at start; tests derive their expectations from these.
INITIAL = {
    1: {"Mn": "gridminer", "Md": "test-inverter", "SN": "0001", "DA": 1},
    103: {
        "A": 100, "AphA": 33, "AphB": 33, "AphC": 34, "A_SF": -1,
        "PhVphA": 2300, "PhVphB": 2300, "PhVphC": 2300, "V_SF": -1,
        "W": 12345, "W_SF": -1,        # 1234.5 W
        "Hz": 5001, "Hz_SF": -2,       # 50.01 Hz
        "WH": 987654, "WH_SF": 1,      # 9876540 Wh
        "DCW": 12500, "DCW_SF": -1, "TmpCab": 35, "Tmp_SF": 0, "St": 4,
        "Evt1": 0, "Evt2": 0,
    },
    203: {
        "A": 50, "AphA": 17, "AphB": 17, "AphC": 16, "A_SF": -1,
        "PhV": 2300, "PhVphA": 2300, "PhVphB": 2300, "PhVphC": 2300, "V_SF": -1,
        "Hz": 4998, "Hz_SF": -2,       # 49.98 Hz
        "W": -150, "WphA": -50, "WphB": -50, "WphC": -50, "W_SF": 1,  # -1500 W: export
        "TotWhExp": 1000, "TotWhImp": 2000, "TotWh_SF": 0, "Evt": 0,
    },
}


def build_device():
    dev = ss_device.Device()
    for mid, values in INITIAL.items():
        model = ss_device.Model(model_id=mid)
        model.points["ID"].value = mid
        model.points["L"].value = model.len - 2  # L excludes the ID and L registers
        for name, v in values.items():
            model.points[name].value = v
        dev.add_model(model)
    return dev


def words(data: bytes):
    return list(struct.unpack(">%dH" % (len(data) // 2), data))


def holding_map(dev):
    return words(b"SunS") + words(dev.get_mb()) + [0xFFFF, 0]


def input_map():
    be_i32 = words(struct.pack(">i", -2500))
    le_u32 = list(reversed(words(struct.pack(">I", 70000))))
    be_f32 = words(struct.pack(">f", 49.95))
    return be_i32 + le_u32 + be_f32 + words(struct.pack(">h", -42)) + [4321]


class Served:
    """The register values and the failure mode the action callback serves from."""

    def __init__(self):
        self.dev = build_device()
        self.holding = holding_map(self.dev)
        self.inputs = input_map()
        self.exception = None

    def point(self, mid, name):
        return self.dev.models[mid][0].points[name]

    def apply(self, cmd):
        if "set" in cmd:
            mid, name, value = cmd["set"]
            self.point(mid, name).value = value
        elif "unimplemented" in cmd:
            mid, name = cmd["unimplemented"]
            self.point(mid, name).value = None  # pysunspec2 encodes None as the sentinel
        elif "exception" in cmd:
            self.exception = cmd["exception"]
        else:
            raise ValueError("unknown command %r" % cmd)
        self.holding = holding_map(self.dev)

    async def action(self, function_code, start_address, address, count, current_registers, set_values):
        if self.exception is not None:
            return ExcCodes(self.exception)
        source, base = (self.holding, BASE) if function_code == 3 else (self.inputs, INPUT_BASE)
        for i in range(len(current_registers)):
            j = start_address + i - base
            if 0 <= j < len(source):
                current_registers[i] = source[j]
        return None


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()

    served = Served()
    holding = [SimData(BASE, values=list(served.holding), datatype=DataType.REGISTERS)]
    inputs = [SimData(INPUT_BASE, values=list(served.inputs), datatype=DataType.REGISTERS)]
    # pymodbus wants every block non-empty; the tests never read coils or discrete inputs.
    bits = [SimData(0, values=False, datatype=DataType.BITS)]
    sim = SimDevice(id=0, simdata=(bits, list(bits), holding, inputs), action=served.action)
    server = ModbusTcpServer(sim, address=("127.0.0.1", args.port))
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    print(port, flush=True)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
            if "exit" in cmd:
                break
            served.apply(cmd)
            print("ok", flush=True)
        except Exception as e:  # a bad command is the test's bug: say so, keep serving
            print("error: %s" % e, flush=True)
    await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
