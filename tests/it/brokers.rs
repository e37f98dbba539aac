//! MQTT brokers for the live tests: a free port, and Debian's mosquitto as a child process
//! the test owns (found, or skipped with a message; a failure under
//! `GRIDMINER_REQUIRE_PEERS=1`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::peers::need;

/// A port nothing listens on now. Brokers bind on their own (rumqttd on its thread,
/// mosquitto in its process) with no way to hand back the port they chose, so the test
/// asks the OS for a free one and passes it on.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// mosquitto on a port of its own, killed on drop.
pub struct Mosquitto {
    child: Child,
    bin: PathBuf,
    conf: PathBuf,
    pub port: u16,
}

impl Mosquitto {
    pub const BIN: &str = "/usr/sbin/mosquitto";

    /// The mosquitto binary, or `None` after saying why the test is skipped.
    pub fn find() -> Option<PathBuf> {
        let p = PathBuf::from(Self::BIN);
        need(p.exists(), "mosquitto", "live tests: run .ci/setup-mqtt.sh")?;
        Some(p)
    }

    /// An anonymous plain-TCP broker on 127.0.0.1:`port`.
    pub fn start(bin: &Path, dir: &Path, port: u16) -> Mosquitto {
        Self::start_with(bin, dir, port, "allow_anonymous true\n")
    }

    /// A broker on 127.0.0.1:`port` with `settings` (mosquitto.conf lines) for that
    /// listener; the config is written to `dir`.
    pub fn start_with(bin: &Path, dir: &Path, port: u16, settings: &str) -> Mosquitto {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\n{settings}persistence false\n"),
        )
        .unwrap();
        Self::spawn(bin, conf, port)
    }

    fn spawn(bin: &Path, conf: PathBuf, port: u16) -> Mosquitto {
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        let mut m = Mosquitto {
            child,
            bin: bin.to_path_buf(),
            conf,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = m.child.try_wait() {
                panic!("mosquitto exited ({status}) with {}", m.conf.display());
            }
            assert!(Instant::now() < deadline, "mosquitto listens on {port}");
            std::thread::yield_now();
        }
        m
    }

    /// Kills it and starts it again with the same config and port.
    pub fn restart(&mut self) {
        self.stop();
        *self = Self::spawn(&self.bin.clone(), self.conf.clone(), self.port);
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}
