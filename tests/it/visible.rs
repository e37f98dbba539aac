//! Issue 10, item 6: bad input is visible. A refused signal payload shows in the state
//! under its signal; a power without a unit is an error with its key path; a closed
//! stdout ends a command quietly; the log has no colours off a terminal and none of the
//! embedded broker's per-connection noise at ERROR.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use gridminer::runtime;
use gridminer::signal::mqtt::RejectReason;
use rumqttc::QoS;
use serde_json::Value;

use super::brokers::free_port;
use super::live::{subscriber, CPU_LOAD};
use super::plausible::feeds;
use super::support::{gridminer, root, site_config, text};
use super::validate::GOOD_SITE;

/// The config of site `id` on an embedded broker at `port`, with PV (kW), frequency,
/// site load and price topics (`plausible::feeds`) and the one-worker pool as the load.
fn embedded_site(id: &str, port: u16) -> String {
    let mqtt = format!("[mqtt]\nbroker = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n");
    site_config(id, "", &format!("{mqtt}{}\n{CPU_LOAD}", feeds(id, "price")))
}

/// r10: `3.2 kW` where a number is expected, `abc`, and an implausible price were
/// dropped with nothing in the state to say so: the user only saw `stale:pv_power` later.
/// Now each signal's `last_rejected` names the reason, when, where from, and a bounded,
/// escaped prefix of the payload, in the retained state a running daemon publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_rejected_payloads_show_in_the_state_under_their_signal() {
    let id = "v10";
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("site.toml");
    std::fs::write(&cfg, embedded_site(id, port)).unwrap();
    let site = gridminer::runtime::config::load(&cfg).expect("config");
    let running = runtime::start(site).await.expect("daemon starts");
    let (client, mut rx) = subscriber(port, &format!("gridminer/{id}/#")).await;
    let availability = format!("gridminer/{id}/availability");
    while super::live::next_message(&mut rx, &availability).await != "online" {}

    let mut hostile = b"\x1b[31m\nERROR forged".to_vec();
    hostile.extend(std::iter::repeat_n(b'x', 500));
    for (topic, payload) in [
        ("pv", b"3.2 kW".to_vec()),
        ("load", b"abc".to_vec()),
        ("price", b"-1e6".to_vec()),
        ("hz", hostile),
    ] {
        client
            .publish(format!("{id}/{topic}"), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    // The retained state, until it shows all four (each step publishes it).
    let state_topic = format!("gridminer/{id}/state");
    let deadline = Instant::now() + Duration::from_secs(20);
    let state = loop {
        let s = super::live::next_message(&mut rx, &state_topic).await;
        let shown = ["pv_power", "site_load", "price", "grid_frequency"]
            .iter()
            .all(|q| !s["signals"][q]["last_rejected"].is_null());
        if shown {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no last_rejected for all four: {s}"
        );
    };
    let last = |q: &str| state["signals"][q]["last_rejected"].clone();
    let pv = last("pv_power");
    assert_eq!(pv["reason"], "not_a_number", "{pv}");
    assert_eq!(pv["payload_prefix"], "3.2 kW");
    assert_eq!(pv["source"], format!("{id}/pv"));
    assert!(
        gridminer::clock::Timestamp::parse(pv["at"].as_str().unwrap()).is_ok(),
        "{pv}"
    );
    assert_eq!(last("site_load")["payload_prefix"], "abc");
    assert_eq!(last("site_load")["reason"], "not_a_number");
    assert_eq!(last("price")["reason"], "out_of_range");
    assert_eq!(last("price")["payload_prefix"], "-1e6");
    // Escaped (no terminal escape or line break gets through) and bounded.
    let hz = last("grid_frequency")["payload_prefix"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        hz.starts_with("\\u{1b}[31m\\nERROR forged") && hz.ends_with('…'),
        "{hz}"
    );
    assert!(!hz.contains(['\x1b', '\n']), "{hz:?}");
    assert!(hz.len() < 100, "{} bytes", hz.len());
    // A signal with nothing refused and no reading: an object of nulls, never null.
    let wind = &state["signals"]["wind_power"];
    assert!(wind.is_object() && wind["value"].is_null(), "{wind}");
    assert!(wind["last_rejected"].is_null(), "{wind}");
    assert_eq!(state["signals"]["pv_power"]["value"], Value::Null);
    // Counted too, as before.
    let c = &running.counters.signals;
    assert!(c.rejected(RejectReason::NotANumber) >= 3);
    assert!(c.rejected(RejectReason::OutOfRange) >= 1);
    running.stop(Duration::from_secs(10)).await.unwrap();
}

/// r10: `--set site.export_limit=6` silently meant 6 W. Now it is an error naming the
/// key and the unit to give, from `simulate` and from `sweep --vary` alike.
#[test]
fn r10_a_bare_power_on_the_command_line_is_an_error_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let scenario = root().join("simulations/de-2018-hybrid.toml");
    let o = gridminer(
        &[
            "simulate",
            scenario.to_str().unwrap(),
            "--no-optimum",
            "--out",
            out.to_str().unwrap(),
            "--set",
            "site.export_limit=6",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("site.export_limit: 6: give a unit, e.g. \"6 MW\""),
        "{}",
        text(&o)
    );
    assert!(!out.exists(), "nothing written");
    let o = gridminer(
        &[
            "sweep",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--vary",
            "site.export_limit=6,8",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("site.export_limit: 6: give a unit"),
        "{}",
        text(&o)
    );
}

/// r10: `rated_power = 3000` in a site config was 3000 W without a word; `config check`
/// now lists it with its key path, beside a bare `base_load` in a scenario.
#[test]
fn r10_config_check_lists_a_bare_power_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let site = GOOD_SITE.replacen("rated_power = \"3 kW\"", "rated_power = 3000", 1);
    std::fs::write(dir.path().join("site.toml"), site).unwrap();
    let scenario = std::fs::read_to_string(root().join("simulations/de-2018-hybrid.toml"))
        .unwrap()
        .replace("../", &format!("{}/", root().display()));
    let bare = scenario.replacen("base_load = \"400 kW\"", "base_load = 400", 1);
    assert_ne!(bare, scenario, "the scenario has a base_load to replace");
    std::fs::write(dir.path().join("scenario.toml"), bare).unwrap();
    let o = gridminer(
        &["config", "check", "site.toml", "scenario.toml"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("  loads[0].rated_power: 3000: give a unit, e.g. \"3000 MW\""),
        "{t}"
    );
    assert!(t.contains("  site.base_load: 400: give a unit"), "{t}");
}

/// r10: `gridminer ... --json | head -c 10` panicked in `println!` on the broken pipe
/// (exit 101 and a backtrace hint). Every command that prints ends quietly with 0 when
/// its reader has gone, whether it closed before the first byte or after ten.
#[test]
fn r10_a_closed_stdout_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let scenario = root().join("simulations/de-2018-hybrid.toml");
    let policies: Vec<String> = std::fs::read_dir(root().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    // The genesis block header: nonce 2083236893 meets its target.
    let genesis = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";
    let mut check = vec!["config", "check"];
    check.extend(policies.iter().map(String::as_str));
    let commands: Vec<Vec<&str>> = vec![
        check,
        vec![
            "hash",
            "scan",
            "--header",
            genesis,
            "--from",
            "2083236800",
            "--to",
            "2083236900",
            "--json",
        ],
        vec![
            "simulate",
            scenario.to_str().unwrap(),
            "--no-optimum",
            "--json",
            "--out",
            out.to_str().unwrap(),
            "--set",
            "end=\"2018-01-03T00:00:00Z\"",
            "--set",
            "bounds={}",
        ],
    ];
    for args in &commands {
        for read_first in [0usize, 10] {
            let mut child = Command::new(env!("CARGO_BIN_EXE_gridminer"))
                .args(args)
                .current_dir(&root())
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let mut head = vec![0u8; read_first];
            stdout.read_exact(&mut head).unwrap();
            // The reader goes: the next write meets a pipe with no reader.
            drop(stdout);
            let o = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.success() && !stderr.contains("panicked"),
                "{args:?} after {read_first} bytes: {} {stderr}",
                o.status
            );
            assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        }
    }
}

/// r10: the log carried ANSI colours into pipes and journald, and every client of the
/// embedded broker that went away without a clean DISCONNECT (a health check, a port
/// scan) was an ERROR from rumqttd. With stderr a pipe and the default filter: no ESC
/// byte, no ERROR from rumqttd, and the daemon's own warnings still there.
#[test]
fn r10_logs_have_no_colours_off_a_terminal_and_no_broker_noise() {
    let id = "v10log";
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(dir.path().join("site.toml"), embedded_site(id, port)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridminer"))
        .args(["run", "--config", "site.toml"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std_mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut r = BufReader::new(stderr);
        let mut line = Vec::new();
        while r
            .read_until(b'\n', &mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
            all.extend_from_slice(&line);
            line.clear();
        }
        all
    });
    let await_line = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) if l.contains(what) => return l,
                Ok(_) => {}
                Err(e) => panic!("no log line with {what:?}: {e}"),
            }
        }
    };
    await_line("gridminer running");

    // A client that never says CONNECT (a health check), and one that sends another
    // packet first (PINGREQ). The broker logs its error before it closes the socket, so
    // once the socket is closed the line has been written, or held back.
    drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    let mut ping = TcpStream::connect(("127.0.0.1", port)).unwrap();
    ping.write_all(&[0xC0, 0x00]).unwrap();
    ping.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = ping.read_to_end(&mut rest);

    // A refused payload, so the daemon's own warning is there to be found.
    // A worker thread runs the client's event loop while this thread reads the log.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let (client, _rx) = subscriber(port, "nothing/at/all").await;
        client
            .publish(format!("{id}/pv"), QoS::AtLeastOnce, false, "abc")
            .await
            .unwrap();
        client
    });
    let warning = await_line("Refused a signal value");
    assert!(
        warning.contains("WARN") && warning.contains("payload=\"abc\""),
        "{warning}"
    );
    let _ = rt.block_on(client.disconnect());
    child.kill().unwrap();
    child.wait().unwrap();
    let all = reader.join().unwrap();
    let log = String::from_utf8_lossy(&all);
    assert!(!all.contains(&0x1b), "ANSI escapes in a piped log:\n{log}");
    let noise: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("rumqttd"))
        .collect();
    assert!(
        noise.is_empty(),
        "broker noise at ERROR:\n{}",
        noise.join("\n")
    );
}
