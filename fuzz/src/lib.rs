//! The bodies of gridminer's fuzz targets: one function per target, each handing its input
//! to the crate's real entry point for that kind of outside input (never a copy of one).
//!
//! Two callers: the cargo-fuzz binaries in `fuzz/fuzz_targets/`, and the integration test
//! `tests/it/fuzz_corpus.rs` (which includes this file by `#[path]`), replaying every file
//! of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` in the normal `cargo test`.
//! So this file uses only gridminer's public API and crates gridminer itself depends on.
//!
//! A body must not panic on any input: a panic is the crash the fuzzer looks for. Where a
//! body checks a property beyond "no panic", it says so.

use std::cell::Cell;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use gridminer::actuator::hasher::stratum::message::{
    self, granted_version_mask, Incoming, Subscription,
};
use gridminer::actuator::hasher::stratum::transport::{Line, LineReader};
use gridminer::actuator::hasher::stratum::work::StratumJob;
use gridminer::clock::Timestamp;
use gridminer::config::Problems;
use gridminer::mqtt::Inbound;
use gridminer::signal::modbus::{
    sunspec, ExceptionCode, ModbusError, RawRegister, RawTarget, RegisterReader, RegisterType,
    Role, Table, WordOrder,
};
use gridminer::signal::mqtt::{MqttSignals, RawMqttSignal};
use gridminer::signal::operator::{
    take_operator_config, Ack, OperatorCommands, OperatorConfig, RefusalReason,
};
use gridminer::signal::Quantity;
use gridminer::state::SiteState;
use gridminer::units::Watts;

/// Every target: its name (the `fuzz_targets/<name>.rs` binary and the corpus folder) and
/// its body.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("operator", operator),
    ("mqtt_signal", mqtt_signal),
    ("modbus", modbus),
    ("stratum", stratum),
    ("scenario_config", scenario_config),
    ("site_config", site_config),
];

/// "Now" for the targets that need a clock: 2023-11-14T22:13:20Z. The operator seeds sign
/// tokens valid around it.
pub const NOW_SECS: i64 = 1_700_000_000;

// ---------------------------------------------------------------------------------------
// Panics whose fix belongs to another branch of issue 9.

/// Panics the fuzzer found whose fix is issue 9's config and range validation (holes 6 and
/// 9: durations out of range in `units.rs`, time arithmetic that overflows in `clock.rs`).
/// The inputs that hit them are kept under `fuzz/regressions/<target>/`; until that fix is
/// merged, a body treats exactly these panics as handled so the fuzzer can search past
/// them. Each entry is (the file the panic is raised in, or "" for any; a piece of its
/// message). **Empty this list once the fix is merged**: the corpus replay test then holds
/// every regression input to "no panic". `GRIDMINER_FUZZ_STRICT=1` in the environment
/// ignores the list (every panic is a crash), to find such inputs or check the fix.
const OPEN_HOLES: &[(&str, &str)] = &[
    // Empty: holes 6 (a duration out of `Duration`'s range) and 9 (time arithmetic out
    // of i64) are fixed; their inputs in `fuzz/regressions/` now must not panic at all.
];

thread_local! {
    /// Set while a body runs under `shielded`.
    static SHIELD: Cell<bool> = const { Cell::new(false) };
    /// Set by the panic hook when the panic in flight is an open hole.
    static OPEN_HOLE_HIT: Cell<bool> = const { Cell::new(false) };
}

fn is_open_hole(info: &std::panic::PanicHookInfo<'_>) -> bool {
    static STRICT: OnceLock<bool> = OnceLock::new();
    if *STRICT.get_or_init(|| std::env::var_os("GRIDMINER_FUZZ_STRICT").is_some_and(|v| v == "1")) {
        return false;
    }
    let file = info.location().map(|l| l.file()).unwrap_or("");
    // `PanicHookInfo::payload_as_str` is Rust 1.91; the crate supports 1.89.
    let payload = info.payload();
    let msg = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("");
    OPEN_HOLES
        .iter()
        .any(|(f, m)| (f.is_empty() || file.ends_with(f)) && msg.contains(m))
}

/// Runs `f`, letting a panic listed in [`OPEN_HOLES`] pass as handled; any other panic
/// goes on to the previous hook (libFuzzer's aborts: the crash is reported) and unwinds on.
/// Returns whether an open hole was hit.
fn shielded(f: impl FnOnce()) -> bool {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let next = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if SHIELD.get() && is_open_hole(info) {
                OPEN_HOLE_HIT.set(true);
                return;
            }
            next(info)
        }));
    });
    SHIELD.set(true);
    OPEN_HOLE_HIT.set(false);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    SHIELD.set(false);
    match r {
        Ok(()) => false,
        Err(_) if OPEN_HOLE_HIT.get() => true,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// Runs one input through a target's body, as the fuzz binaries and the replay test do.
/// Returns whether it hit a panic listed in [`OPEN_HOLES`] (the replay test reports those
/// instead of failing); any other panic propagates.
pub fn run(body: fn(&[u8]), data: &[u8]) -> bool {
    shielded(|| body(data))
}

/// Polls a future that never waits (the in-memory device and byte-slice reader here
/// answer at once) to its end.
fn ready<T>(f: impl Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("nothing here waits"),
    }
}

// ---------------------------------------------------------------------------------------
// operator: signed grid-operator commands.

const SITE: &str = "site-a";
/// The HS256 operator `agg`'s secret.
pub const HS256_SECRET: &[u8] = b"fuzz-hs256-secret-of-at-least-32-bytes";
/// The EdDSA operator `tso`'s private key (its public key is configured).
pub const ED25519_SEED: [u8; 32] = [7; 32];

/// The operators as a site configures them, through the real config path:
/// `tso` (EdDSA), `agg` (HS256, 5 min lifetime) and a heartbeat failsafe.
fn operator_config() -> &'static OperatorConfig {
    static CONFIG: OnceLock<OperatorConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let public = STANDARD.encode(
            SigningKey::from_bytes(&ED25519_SEED)
                .verifying_key()
                .as_bytes(),
        );
        let secret = std::str::from_utf8(HS256_SECRET).expect("ASCII");
        let text = format!(
            r#"
            [[operators]]
            id = "tso"
            alg = "EdDSA"
            public_key = "{public}"
            priority = 100
            [[operators]]
            id = "agg"
            alg = "HS256"
            secret = "{secret}"
            max_lifetime = "5m"
            priority = 10
            [operator_heartbeat]
            timeout = "90s"
            failsafe_limit = "0 W"
            "#
        );
        let mut table: toml::Table = text.parse().expect("the operator config is TOML");
        let mut problems = Problems::default();
        take_operator_config(&mut table, Path::new("fuzz.toml"), &mut problems)
            .unwrap_or_else(|| panic!("the fuzz operator config is valid: {:?}", problems.0))
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS of `header` and `claims` (bytes as given), signed with the HS256
/// operator's secret or the EdDSA operator's key.
fn sign(header: &[u8], claims: &[u8], eddsa: bool) -> Vec<u8> {
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature = if eddsa {
        SigningKey::from_bytes(&ED25519_SEED)
            .sign(input.as_bytes())
            .to_bytes()
            .to_vec()
    } else {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(HS256_SECRET).expect("any key");
        mac.update(input.as_bytes());
        mac.finalize().into_bytes().to_vec()
    };
    format!("{input}.{}", b64(&signature)).into_bytes()
}

/// Operator commands through `OperatorCommands::receive`, as `gridminer/{site}/cmd` hands
/// them over. The first byte picks what the rest is, so that fuzzed bytes reach the claims
/// checks behind a valid signature:
///
/// | first byte % 5 | rest |
/// |---|---|
/// | 0 | the payload as received |
/// | 1 | JWT claims (JSON), signed HS256 by `agg` |
/// | 2 | JWT claims, signed EdDSA by `tso` |
/// | 3 | JOSE header, a NUL byte, claims; signed HS256 |
/// | 4 | JOSE header, a NUL byte, claims; signed EdDSA |
///
/// Besides "no panic", checks that an accepted token sent again is refused as replayed.
pub fn operator(data: &[u8]) {
    operator_accepts(data);
}

/// The `operator` target's body; says whether the command was accepted (the replay test
/// checks that the corpus holds accepted commands, so the fuzzer starts past the checks).
pub fn operator_accepts(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let split = |rest: &[u8]| match rest.iter().position(|&b| b == 0) {
        Some(i) => (rest[..i].to_vec(), rest[i + 1..].to_vec()),
        None => (rest.to_vec(), Vec::new()),
    };
    let token = match mode % 5 {
        0 => rest.to_vec(),
        1 => sign(br#"{"alg":"HS256","typ":"JWT"}"#, rest, false),
        2 => sign(br#"{"alg":"EdDSA","typ":"JWT"}"#, rest, true),
        3 => {
            let (h, c) = split(rest);
            sign(&h, &c, false)
        }
        _ => {
            let (h, c) = split(rest);
            sign(&h, &c, true)
        }
    };
    let now = Timestamp::from_secs(NOW_SECS);
    let mut commands =
        OperatorCommands::new(SITE, operator_config().clone()).with_max_power(Watts(1e6));
    // The authority check runs against the commands in force, as the daemon's loop does;
    // what is accepted is applied, so the second look meets it in force.
    let mut state = SiteState::new(&[]);
    let first = commands.receive(&token, now, &state.commands);
    for obs in first.observations.iter().cloned() {
        state.observe(obs);
    }
    let _ = Ack::new(&first.outcome, Some(Watts(0.0)), now).to_json();
    let again = commands.receive(&token, now, &state.commands);
    if first.outcome.is_ok() {
        assert!(
            matches!(&again.outcome, Err(r) if r.reason == RefusalReason::Replayed),
            "an accepted token was not refused the second time: {:?}",
            again.outcome
        );
    }
    let _ = Ack::new(&again.outcome, None, now).to_json();
    let _ = commands.tick(now + Duration::from_secs(91));
    first.outcome.is_ok()
}

// ---------------------------------------------------------------------------------------
// mqtt_signal: MQTT signal payloads and the price schedule.

/// One topic per way a payload is read: each quantity kind, a scaled unit, a JSON field.
const SIGNALS: &str = r#"s = [
  { topic = "pv", quantity = "pv_power", unit = "kW" },
  { topic = "wind", quantity = "wind_power", unit = "MW", json_field = "value" },
  { topic = "load", quantity = "site_load" },
  { topic = "meter", quantity = "grid_power", json_field = "w" },
  { topic = "mining", quantity = "mining_power", unit = "kW", json_field = "p" },
  { topic = "hz", quantity = "grid_frequency", unit = "Hz" },
  { topic = "price", quantity = "price", unit = "EUR/kWh" },
  { topic = "hashprice", quantity = "hashprice", unit = "EUR/TH/day", json_field = "v" },
  { topic = "schedule", quantity = "price_schedule" },
  { topic = "schedule_kwh", quantity = "price_schedule", unit = "EUR/kWh" },
]"#;

fn signal_table() -> &'static (MqttSignals, Vec<String>) {
    static TABLE: OnceLock<(MqttSignals, Vec<String>)> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t: toml::Table = SIGNALS.parse().expect("the signal table is TOML");
        let raw: Vec<RawMqttSignal> = t
            .remove("s")
            .expect("s")
            .try_into()
            .expect("the signal table deserialises");
        let mut problems = Problems::default();
        let raw = raw.into_iter().enumerate().collect();
        let signals = gridminer::signal::mqtt::validate(&mut problems, "signals", raw);
        assert!(problems.0.is_empty(), "{:?}", problems.0);
        let table = MqttSignals::new(signals);
        let mut topics = table.topics();
        topics.push("not/mapped".into());
        (table, topics)
    })
}

/// A message through `MqttSignals::parse`; the first byte picks the topic (sorted:
/// hashprice, hz, load, meter, mining, price, pv, schedule, schedule_kwh, wind, then an
/// unmapped one), the rest is the payload. An accepted observation goes into a
/// `SiteState`, and a schedule is looked up around now, as the controller does.
pub fn mqtt_signal(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let (table, topics) = signal_table();
    let at = Timestamp::from_secs(NOW_SECS);
    let msg = Inbound {
        topic: topics[usize::from(pick) % topics.len()].clone(),
        payload: bytes::Bytes::copy_from_slice(payload),
        at,
    };
    if let Ok(obs) = table.parse(&msg) {
        let mut state = SiteState::new(&[]);
        state.observe(obs);
        for secs in [-86_400, -1, 0, 1, 900, 3_600, 3 * 86_400] {
            let _ = state.scheduled_price(Timestamp::from_secs(NOW_SECS + secs));
        }
    }
}

// ---------------------------------------------------------------------------------------
// modbus: SunSpec discovery and decoding, raw register maps.

/// A Modbus device serving the fuzzed words as holding (and input) registers from `base`
/// on; a read outside them gets exception 2 (illegal data address), as a real device
/// answers.
struct Device {
    base: u16,
    words: Vec<u16>,
}

impl Device {
    fn serve(&self, table: Table, address: u16, count: u16) -> Result<Vec<u16>, ModbusError> {
        let start = usize::from(address.wrapping_sub(self.base));
        let end = start + usize::from(count);
        if address >= self.base && end <= self.words.len() {
            Ok(self.words[start..end].to_vec())
        } else {
            Err(ModbusError::Exception {
                table,
                address,
                count,
                code: ExceptionCode(2),
            })
        }
    }
}

impl RegisterReader for Device {
    async fn read_holding(&mut self, address: u16, count: u16) -> Result<Vec<u16>, ModbusError> {
        self.serve(Table::Holding, address, count)
    }
    async fn read_input(&mut self, address: u16, count: u16) -> Result<Vec<u16>, ModbusError> {
        self.serve(Table::Input, address, count)
    }
}

/// Register contents through the decoding a poll runs. The first byte picks the role
/// (bits 0-1) and where the map starts (bits 2-3: 40000, 0, 50000, or the next two bytes);
/// the rest is big-endian registers. Runs SunSpec discovery, the poll plan, the read and
/// `sunspec::decode` with the observations it makes, `decode` straight on the registers
/// (model ID from the first), and every raw register type and word order on them.
pub fn modbus(data: &[u8]) {
    let Some((&head, mut rest)) = data.split_first() else {
        return;
    };
    let role = [Role::Pv, Role::Wind, Role::GridMeter, Role::SiteLoad][usize::from(head & 3)];
    let base = match (head >> 2) & 3 {
        0 => 40000,
        1 => 0,
        2 => 50000,
        _ => match rest {
            [a, b, tail @ ..] => {
                rest = tail;
                u16::from_be_bytes([*a, *b])
            }
            _ => return,
        },
    };
    let words: Vec<u16> = rest
        .chunks_exact(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]))
        .collect();
    let at = Timestamp::from_secs(NOW_SECS);
    let mut device = Device { base, words };
    if let Ok(models) = ready(sunspec::discover(&mut device)) {
        if let Ok(plan) = sunspec::plan(&models, role) {
            let block = ready(device.read(Table::Holding, plan.model.address, plan.count));
            if let Ok(reading) = block
                .map_err(|e| e.to_string())
                .and_then(|b| sunspec::decode(plan.model.id, &b))
            {
                let _ = reading.observations(role, at);
            }
        }
    }
    let words = device.words;
    if let Some(&id) = words.first() {
        if let Ok(reading) = sunspec::decode(id, &words) {
            let _ = reading.observations(role, at);
        }
    }
    for kind in [
        RegisterType::U16,
        RegisterType::I16,
        RegisterType::U32,
        RegisterType::I32,
        RegisterType::F32,
    ] {
        for word_order in [WordOrder::Big, WordOrder::Little] {
            let register = RawRegister {
                target: RawTarget::Power {
                    quantity: Quantity::GridPower,
                    watts_per_unit: 1000.0,
                },
                table: Table::Input,
                address: base,
                kind,
                word_order,
                scale: 0.1,
            };
            let n = usize::from(kind.words()).min(words.len());
            let _ = register.observation(&words[..n], at);
        }
    }
}

// ---------------------------------------------------------------------------------------
// stratum: what a pool sends.

/// A pool's byte stream through the `LineReader` and `message::parse`, line by line, with
/// what the session does with each message: a response's result read as a subscription
/// and a configure grant, and each `mining.notify` built into a job (at the difficulty,
/// version mask and extranonce the stream set so far) and a few of its headers.
pub fn stratum(data: &[u8]) {
    let mut reader = LineReader::new(data);
    let mut subscription = Subscription {
        extranonce1: vec![0x08, 0, 0, 2],
        extranonce2_size: 4,
    };
    let mut difficulty = 1.0;
    let mut version_mask = 0;
    while let Ok(line) = ready(reader.next_line()) {
        let Line::Text(line) = line else { continue };
        match message::parse(&line) {
            Ok(Incoming::Response { result, .. }) => {
                if let Ok(s) = Subscription::parse(&result) {
                    subscription = s;
                }
                if let Ok(Some(mask)) = granted_version_mask(&result) {
                    version_mask = mask;
                }
            }
            Ok(Incoming::Notify(n)) => {
                if let Ok(job) = StratumJob::new(
                    n,
                    subscription.extranonce1.clone(),
                    subscription.extranonce2_size,
                    version_mask,
                    difficulty,
                ) {
                    for roll in [0, 1, 0xFFFF, 1 << 40] {
                        let (extranonce2, version) = job.roll_parts(roll);
                        let _ = job.header_for(&extranonce2, version);
                    }
                }
            }
            Ok(Incoming::SetDifficulty(d)) => difficulty = d,
            Ok(Incoming::SetVersionMask(m)) => version_mask = m,
            Ok(Incoming::Other(_)) | Err(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// scenario_config and site_config: TOML files as `gridminer config check` reads them.

/// A folder laid out like the repository where fuzzed config files are written: its
/// `policies/`, `data/` and the files beside `deploy/examples/*.toml` are links to the
/// repository's, so the paths the shipped examples name (`../policies/economic.toml`,
/// `mqtt-password`, ...) resolve as they do in the repository. One folder per checkout
/// (named by a hash of its path), reused by every run; each input's file is removed after
/// it is loaded.
fn config_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let repo = if manifest.join("policies").is_dir() {
            manifest
        } else {
            manifest.parent().expect("fuzz/ sits in the repository")
        };
        // In memory where there is a tmpfs: on ext4, rewriting a file in place flushes it
        // to disk on close (auto_da_alloc), which made each input cost milliseconds.
        let shm = Path::new("/dev/shm");
        let tmp = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(repo, &mut h);
        let dir = tmp.join(format!(
            "gridminer-fuzz-{:016x}",
            std::hash::Hasher::finish(&h)
        ));
        let examples = dir.join("deploy/examples");
        std::fs::create_dir_all(&examples).expect("temp dir");
        std::fs::create_dir_all(dir.join("simulations")).expect("temp dir");
        let link = |from: PathBuf, to: PathBuf| match std::os::unix::fs::symlink(from, &to) {
            // Made by an earlier run, or by another process of this one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            r => r.unwrap_or_else(|e| panic!("symlink {}: {e}", to.display())),
        };
        link(repo.join("policies"), dir.join("policies"));
        link(repo.join("data"), dir.join("data"));
        for e in std::fs::read_dir(repo.join("deploy/examples")).expect("deploy/examples") {
            let p = e.expect("dir entry").path();
            if p.extension().is_none_or(|x| x != "toml") {
                link(p.clone(), examples.join(p.file_name().expect("a file")));
            }
        }
        dir
    })
}

/// Whether a config could name a device or kernel file (`password_file = "/dev/stdin"`
/// would wait forever, `/dev/zero` fill memory): the loaders read every file a config
/// names, and a config is its administrator's own, so such inputs are skipped rather
/// than read. Escapes and line continuations could spell one in a TOML string, so inputs
/// with those are skipped too.
fn names_special_file(text: &str) -> bool {
    ["/dev", "/proc", "/sys", "\\u", "\\U", "\\\n", "\\\r"]
        .iter()
        .any(|s| text.contains(s))
}

/// Writes `data` as `<folder>/<process>-<thread>.toml` in [`config_dir`] (so that the
/// replay test's threads and a fuzz run beside it never share a file), hands the path to
/// `load`, and removes the file.
fn with_config_file(folder: &str, data: &[u8], load: impl FnOnce(&Path)) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if names_special_file(text) {
        return;
    }
    let thread = format!("{:?}", std::thread::current().id()).replace(['(', ')'], "");
    let name = format!("{}-{thread}.toml", std::process::id());
    let path = config_dir().join(folder).join(name);
    std::fs::write(&path, text).expect("writing the fuzzed config");
    // Removed even when `load` panics on an open hole (see `OPEN_HOLES`).
    struct Remove<'a>(&'a Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _remove = Remove(&path);
    load(&path);
}

/// A scenario file through `config::load_scenario` (`gridminer config check` on a
/// scenario; policy files it names are inlined as there), written in `simulations/`.
pub fn scenario_config(data: &[u8]) {
    with_config_file("simulations", data, |path| {
        let _ = gridminer::scenario::load_scenario(path, &[]);
    });
}

/// A site file through `runtime::config::load` (`gridminer config check` and `gridminer run` on
/// a site config), written in `deploy/examples/`.
pub fn site_config(data: &[u8]) {
    with_config_file("deploy/examples", data, |path| {
        let _ = gridminer::runtime::config::load(path);
    });
}
