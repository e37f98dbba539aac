//! btminer's read commands, shaped as real firmware answers them (asic-rs's recorded
//! v2 replies under `src/test/json/v2/`), with every field either client reads:
//! asic-rs takes the hash rate from `HS RT` and `MHS av`, pyasic from `MHS 1m`.

use serde_json::{json, Value};

use super::{Identity, API_VERSION, FIRMWARE_VERSION};
use crate::emulator::model::{Miner, Reading};

pub(super) struct Context<'a> {
    pub miner: &'a Miner,
    pub reading: &'a Reading,
    pub identity: &'a Identity,
    pub unix: i64,
}

/// The cgminer-style status list the cgminer-derived commands answer with.
fn cg_status(ctx: &Context, code: u32, msg: &str) -> Value {
    json!([{"STATUS": "S", "When": ctx.unix, "Code": code, "Msg": msg, "Description": "btminer"}])
}

/// The flat status btminer's own commands answer with, around `msg`.
fn flat(ctx: &Context, msg: Value) -> Value {
    json!({"STATUS": "S", "When": ctx.unix, "Code": 131, "Msg": msg, "Description": ""})
}

fn mhs(ctx: &Context) -> f64 {
    ctx.reading.hashrate.0 / 1e6
}

pub(super) fn version(ctx: &Context) -> Value {
    json!({
        "STATUS": cg_status(ctx, 22, "CGMiner versions"),
        "VERSION": [{"CGMiner": "4.9.2", "API": "3.7", "Miner": "btminer", "CompileTime": ""}],
        "id": 1,
    })
}

pub(super) fn devdetails(ctx: &Context) -> Value {
    let s = ctx.miner.spec;
    let boards: Vec<Value> = (0..s.boards)
        .map(|i| {
            json!({"DEVDETAILS": i, "Name": "SM", "ID": i, "Driver": "bitmicro",
                   "Kernel": "", "Model": s.firmware_model})
        })
        .collect();
    json!({"STATUS": cg_status(ctx, 69, "Device Details"), "DEVDETAILS": boards, "id": 1})
}

pub(super) fn get_version(ctx: &Context) -> Value {
    flat(
        ctx,
        json!({"api_ver": API_VERSION, "fw_ver": FIRMWARE_VERSION, "platform": "H616", "chip": "K40"}),
    )
}

pub(super) fn summary(ctx: &Context) -> Value {
    let r = ctx.reading;
    let s = ctx.miner.spec;
    let m = mhs(ctx);
    let power = r.power.0.round() as i64;
    json!({
        "STATUS": cg_status(ctx, 11, "Summary"),
        "SUMMARY": [{
            "Elapsed": r.elapsed.as_secs(),
            "MHS av": m, "MHS 5s": m, "MHS 1m": m, "MHS 5m": m, "MHS 15m": m,
            "HS RT": m,
            "Accepted": 0, "Rejected": 0,
            "Temperature": round1(r.board_temp_c),
            "freq_avg": if r.hashrate.0 > 0.0 { 600 } else { 0 },
            "Fan Speed In": r.fan_rpm.round() as i64,
            "Fan Speed Out": (r.fan_rpm * 0.98).round() as i64,
            "Power": power,
            "Power Rate": if r.hashrate.0 > 0.0 { round1(r.power.0 / (r.hashrate.0 / 1e12)) } else { 0.0 },
            "Pool Rejected%": 0.0,
            "Uptime": r.elapsed.as_secs(),
            "Hash Stable": r.stable,
            "Target Freq": 600,
            "Target MHS": s.rated_hashrate.0 / 1e6,
            "Env Temp": round1(ctx.miner.dynamics.ambient_c),
            "Power Mode": ctx.miner.mode().label(),
            "Factory GHS": (s.rated_hashrate.0 / 1e9).round() as i64,
            "Power Limit": ctx.miner.limit().0.round() as i64,
            "Chip Temp Min": round1(r.chip_temp_c - 8.0),
            "Chip Temp Max": round1(r.chip_temp_c + 8.0),
            "Chip Temp Avg": round1(r.chip_temp_c),
            "Power Fanspeed": psu_fan(r),
            "Error Code Count": 0,
            "MAC": ctx.identity.mac(),
            "Firmware Version": format!("'{FIRMWARE_VERSION}'"),
        }],
        "id": 1,
    })
}

pub(super) fn devs(ctx: &Context) -> Value {
    let r = ctx.reading;
    let s = ctx.miner.spec;
    let n = f64::from(s.boards);
    let boards: Vec<Value> = (0..s.boards)
        .map(|i| {
            let m = mhs(ctx) / n;
            let offset = f64::from(i);
            json!({
                "ASC": i, "Slot": i, "ID": i, "Name": "SM", "Enabled": "Y",
                "Status": "Alive",
                "Temperature": round1(r.board_temp_c + offset),
                "Chip Frequency": 600, "Frequency": 600.0,
                "MHS av": m, "MHS 5s": m, "MHS 1m": m, "MHS 5m": m, "MHS 15m": m,
                "Factory GHS": (s.rated_hashrate.0 / 1e9 / n).round() as i64,
                "Accepted": 0, "Rejected": 0,
                "Device Elapsed": r.elapsed.as_secs(),
                "Fan Speed In": r.fan_rpm.round() as i64,
                "Fan Speed Out": (r.fan_rpm * 0.98).round() as i64,
                "Effective Chips": s.chips_per_board,
                "PCB SN": format!("{}{:02}", ctx.identity.serial(), i),
                "Chip Temp Min": round1(r.chip_temp_c - 8.0 + offset),
                "Chip Temp Max": round1(r.chip_temp_c + 8.0 + offset),
                "Chip Temp Avg": round1(r.chip_temp_c + offset),
            })
        })
        .collect();
    json!({"STATUS": cg_status(ctx, 9, &format!("{} ASC(s)", s.boards)), "DEVS": boards, "id": 1})
}

pub(super) fn pools(ctx: &Context) -> Value {
    let alive = !ctx.reading.mineroff;
    json!({
        "STATUS": cg_status(ctx, 7, "1 Pool(s)"),
        "POOLS": [{
            "POOL": 1, "URL": "stratum+tcp://pool.invalid:3333",
            "Status": if alive { "Alive" } else { "Dead" },
            "Priority": 0, "Quota": 1, "Long Poll": "N", "Getworks": 0,
            "Accepted": 0, "Rejected": 0, "Works": 0, "Discarded": 0, "Stale": 0,
            "Get Failures": 0, "Remote Failures": 0,
            "User": format!("gridminer.{}", ctx.identity.index),
            "Stratum Active": alive, "Stratum Difficulty": 65536.0,
        }],
        "id": 1,
    })
}

pub(super) fn status(ctx: &Context) -> Value {
    let r = ctx.reading;
    flat(
        ctx,
        json!({
            "mineroff": if r.mineroff { "true" } else { "false" },
            "mineroff_reason": if r.mineroff { "api power off" } else { "" },
            "mineroff_time": "",
            "FirmwareVersion": format!("{FIRMWARE_VERSION}"),
            "power_mode": ctx.miner.mode().label().to_ascii_lowercase(),
            "hash_percent": "100",
            "power_limit_set": format!("{}", ctx.miner.limit().0.round()),
        }),
    )
}

pub(super) fn get_psu(ctx: &Context) -> Value {
    let s = ctx.miner.spec;
    let r = ctx.reading;
    flat(
        ctx,
        json!({
            "name": s.psu, "model": s.psu, "hw_version": "V01.00", "sw_version": "230208.220429",
            "vin": "22600", "iin": format!("{}", (r.power.0 / 226.0 * 100.0).round()),
            "fan_speed": format!("{}", psu_fan(r)),
        }),
    )
}

pub(super) fn get_miner_info(ctx: &Context) -> Value {
    let id = ctx.identity;
    flat(
        ctx,
        json!({
            "ip": id.addr.to_string(), "proto": "dhcp", "netmask": "255.0.0.0",
            "gateway": "", "dns": "", "hostname": "WhatsMiner",
            "mac": id.mac(), "ledstat": "auto", "minersn": id.serial(),
        }),
    )
}

pub(super) fn get_error_code(ctx: &Context) -> Value {
    flat(ctx, json!({"error_code": []}))
}

fn psu_fan(r: &Reading) -> i64 {
    if r.power.0 < 100.0 {
        0
    } else {
        (2000.0 + r.power.0).round() as i64
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
