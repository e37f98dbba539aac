//! A WebDriver client for Debian's headless Chromium, driven by chromedriver: enough of
//! the W3C WebDriver protocol for the page tests (a session, navigate, run a script, the
//! browser console, a screenshot). Written here rather than taken from a crate: a few
//! blocking HTTP calls, no async runtime of its own.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// Whether chromium and chromedriver are here; skips (or, with peers required, fails)
/// with how to install them.
pub fn available() -> bool {
    let have = super::peers::on_path("chromium") && super::peers::on_path("chromedriver");
    super::peers::need(
        have,
        "chromium and chromedriver",
        "apt-get install -y chromium chromium-driver, or .ci/setup-chromium.sh",
    )
    .is_some()
}

/// chromedriver on a free port of its own choosing (`--port=0`), ended on drop.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// Starts chromedriver. With `--port=0` it takes a free IPv6 port and then wants the
    /// same number on IPv4, which another process may hold by then ("IPv4 port not
    /// available. Exiting..."): such a start is tried again, a few times, each on a new
    /// free port of its own choosing.
    pub fn start() -> Driver {
        let mut last = String::new();
        for _ in 0..5 {
            match Driver::try_start() {
                Ok(d) => return d,
                Err(seen) if seen.contains("port not available") => last = seen,
                Err(seen) => panic!("chromedriver exited before listening: {seen}"),
            }
        }
        panic!("chromedriver found no free port in 5 starts: {last}");
    }

    fn try_start() -> Result<Driver, String> {
        let mut child = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        // It prints "ChromeDriver was started successfully on port 41611." once it
        // listens; the port is read from there, so nothing guesses one.
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut seen = String::new();
        let port = loop {
            let mut buf = Vec::new();
            let n = out
                .read_until(b'.', &mut buf)
                .expect("chromedriver's stdout");
            if n == 0 {
                let _ = child.wait();
                return Err(seen);
            }
            seen.push_str(&String::from_utf8_lossy(&buf));
            if let Some(rest) = seen.split("started successfully on port ").nth(1) {
                if let Some(p) = rest.strip_suffix('.') {
                    break p.trim().parse().expect("a port number");
                }
            }
        };
        // Keep draining its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Ok(Driver { child, port })
    }

    /// One WebDriver command: its `value`, or the error WebDriver answered.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Value> {
        let body = body.map_or(String::new(), |b| b.to_string());
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("chromedriver listens");
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        // Read by Content-Length: chromedriver keeps the connection open after its answer
        // whatever `Connection: close` says, so reading to the end would wait forever.
        let mut r = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = r.read_line(&mut line).expect("chromedriver answers");
            assert!(
                n > 0,
                "chromedriver closed the connection mid-answer: {head}"
            );
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no Content-Length from {method} {path}: {head}"));
        let mut payload = vec![0; length];
        r.read_exact(&mut payload).expect("chromedriver's answer");
        let payload = String::from_utf8_lossy(&payload);
        let v: Value = serde_json::from_str(&payload)
            .unwrap_or_else(|e| panic!("{e}: not JSON from {method} {path}: {head}\n{payload}"));
        let ok = head.split(' ').nth(1) == Some("200");
        let value = v["value"].clone();
        if ok {
            Ok(value)
        } else {
            Err(value)
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session with the browser's console log kept.
pub struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl<'a> Session<'a> {
    pub fn new(driver: &'a Driver) -> Session<'a> {
        Session::with_args(driver, &[])
    }

    /// A session whose Chromium gets `more` command-line arguments.
    pub fn with_args(driver: &'a Driver, more: &[&str]) -> Session<'a> {
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1300,2000",
        ];
        args.extend_from_slice(more);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": args,
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = driver
            .call("POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("chromedriver could not start chromium: {e}"));
        Session {
            driver,
            id: v["sessionId"].as_str().expect("a session id").to_string(),
        }
    }

    pub fn cmd(&self, method: &str, what: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}/{what}", self.id);
        self.driver
            .call(method, &path, body)
            .unwrap_or_else(|e| panic!("{method} {what}: {e}"))
    }

    pub fn open(&self, file: &Path) {
        let url = format!("file://{}", file.canonicalize().unwrap().display());
        self.navigate(&url);
    }

    pub fn navigate(&self, url: &str) {
        self.cmd("POST", "url", Some(&json!({ "url": url })));
    }

    /// Saves what the page shows now as a PNG at `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self.cmd("GET", "screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a base64 screenshot"))
            .expect("base64");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).expect("the screenshot is written");
    }

    /// Polls `script` (which returns a value) until `ok` accepts it; panics with `what`,
    /// the last value and the console after `within`. (A poll with a deadline: the page
    /// updates on its own schedule.)
    pub fn until(
        &self,
        what: &str,
        within: Duration,
        script: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + within;
        loop {
            let v = self.eval(script);
            if ok(&v) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; last {v}; console {:?}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(100)); // poll interval, under the deadline
        }
    }

    /// That the console really is read: an error the page logs now shows up as SEVERE
    /// (so an empty log means no error, not a log that was never seen).
    pub fn assert_console_is_read(&self, probe: &str) {
        self.eval(&format!("console.error('{probe}'); return null;"));
        let log = self.console();
        assert!(
            severe(&log)
                .iter()
                .any(|e| e["message"].as_str().is_some_and(|m| m.contains(probe))),
            "the browser log does not show console errors: {log:?}"
        );
    }

    pub fn eval(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "execute/sync",
            Some(&json!({"script": script, "args": []})),
        )
    }

    /// The browser console since the last call (chromedriver's log endpoint).
    pub fn console(&self) -> Vec<Value> {
        let v = self.cmd("POST", "se/log", Some(&json!({"type": "browser"})));
        v.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .call("DELETE", &format!("/session/{}", self.id), None);
    }
}

/// The browser binary itself: Debian's `/usr/bin/chromium` is a shell wrapper that
/// chromedriver cannot drive (the session never starts), the real one is beside it.
pub fn chromium() -> String {
    let debian = Path::new("/usr/lib/chromium/chromium");
    if debian.is_file() {
        debian.display().to_string()
    } else {
        which("chromium")
    }
}

fn which(program: &str) -> String {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(program))
                .find(|f| f.is_file())
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| program.to_string())
}

/// Console entries at SEVERE: script errors, failed loads (a page that tried to fetch
/// anything offline would show one here too).
pub fn severe(log: &[Value]) -> Vec<&Value> {
    log.iter().filter(|e| e["level"] == "SEVERE").collect()
}
