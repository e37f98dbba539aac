//! RAPL package energy counters (`/sys/class/powercap/intel-rapl:N/energy_uj`), where the
//! machine exposes them, to measure the watts a hashing core really draws.
//!
//! Role: read counters and turn two readings into average power. Must not guess: a
//! machine without RAPL (VMs, most ARM boards) reports `RaplError::Unavailable` and the
//! configured watts per core stay in force.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::units::Watts;

/// The default sysfs root.
pub const POWERCAP_ROOT: &str = "/sys/class/powercap";

#[derive(Debug, thiserror::Error)]
pub enum RaplError {
    #[error("no RAPL package domains under {0}")]
    Unavailable(PathBuf),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds {text:?}, not a counter")]
    Parse { path: PathBuf, text: String },
}

/// One package domain's counter and its wrap-around range.
#[derive(Debug, Clone)]
struct Domain {
    energy: PathBuf,
    max_range_uj: u64,
}

/// The package-level RAPL domains of this machine (sub-domains are excluded: they are
/// already counted in their package).
#[derive(Debug, Clone)]
pub struct Rapl {
    domains: Vec<Domain>,
}

/// Energy counters read at one instant.
#[derive(Debug, Clone)]
pub struct RaplReading {
    at: Instant,
    uj: Vec<u64>,
}

fn read_u64(path: &Path) -> Result<u64, RaplError> {
    let text = std::fs::read_to_string(path).map_err(|source| RaplError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.trim().parse().map_err(|_| RaplError::Parse {
        path: path.to_owned(),
        text,
    })
}

impl Rapl {
    /// Finds `intel-rapl:N` (package) domains under `root`.
    pub fn discover(root: &Path) -> Result<Rapl, RaplError> {
        let mut domains = Vec::new();
        if let Ok(entries) = std::fs::read_dir(root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                // "intel-rapl:0" is a package; "intel-rapl:0:1" is a sub-domain of it.
                let is_package = name
                    .strip_prefix("intel-rapl:")
                    .is_some_and(|rest| !rest.contains(':'));
                if is_package {
                    let dir = e.path();
                    domains.push(Domain {
                        energy: dir.join("energy_uj"),
                        max_range_uj: read_u64(&dir.join("max_energy_range_uj"))?,
                    });
                }
            }
        }
        if domains.is_empty() {
            return Err(RaplError::Unavailable(root.to_owned()));
        }
        domains.sort_by(|a, b| a.energy.cmp(&b.energy));
        Ok(Rapl { domains })
    }

    pub fn read(&self) -> Result<RaplReading, RaplError> {
        let uj = self
            .domains
            .iter()
            .map(|d| read_u64(&d.energy))
            .collect::<Result<_, _>>()?;
        Ok(RaplReading {
            at: Instant::now(),
            uj,
        })
    }

    /// Average power of all packages between two readings, counter wrap-around included.
    pub fn power_between(&self, a: &RaplReading, b: &RaplReading) -> Watts {
        let secs = b.at.duration_since(a.at).as_secs_f64();
        if secs <= 0.0 {
            return Watts::ZERO;
        }
        let uj: u64 = self
            .domains
            .iter()
            .zip(a.uj.iter().zip(&b.uj))
            .map(|(d, (&x, &y))| {
                if y >= x {
                    y - x
                } else {
                    d.max_range_uj - x + y
                }
            })
            .sum();
        Watts(uj as f64 / 1e6 / secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_are_found_and_wraps_handled() {
        let dir = tempfile::tempdir().unwrap();
        for (name, e) in [
            ("intel-rapl:0", 900),
            ("intel-rapl:0:0", 5),
            ("intel-rapl:1", 100),
        ] {
            let d = dir.path().join(name);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("energy_uj"), format!("{e}\n")).unwrap();
            std::fs::write(d.join("max_energy_range_uj"), "1000\n").unwrap();
        }
        let rapl = Rapl::discover(dir.path()).unwrap();
        assert_eq!(rapl.domains.len(), 2);
        let a = rapl.read().unwrap();
        let mut b = a.clone();
        b.uj = vec![100, 300]; // package 0 wrapped: +200 uJ; package 1: +200 uJ
        b.at = a.at + std::time::Duration::from_millis(100);
        let p = rapl.power_between(&a, &b);
        assert!((p.0 - 0.004).abs() < 1e-12, "{p}");
    }

    #[test]
    fn a_machine_without_rapl_says_so() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Rapl::discover(dir.path()),
            Err(RaplError::Unavailable(_))
        ));
    }
}
