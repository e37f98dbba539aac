//! Glue for `gridminer ledger verify|prove|consistency|show` and `gridminer
//! certificates`: the ledger read back, whether or not the daemon writes it (they read
//! only what the latest checkpoint covers).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::clock::Timestamp;
use crate::ledger::entry::{Certificate, Entry};
use crate::ledger::{note, verify};

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Check every entry, the tree, every checkpoint and their consistency.
    Verify {
        dir: PathBuf,
        /// The site's verifier key: its `<name>.vkey` file or the key itself.
        #[arg(long)]
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// An inclusion proof (RFC 9162) of entry N against the latest checkpoint, as JSON.
    Prove {
        dir: PathBuf,
        #[arg(long, value_name = "N")]
        entry: u64,
    },
    /// A consistency proof (RFC 9162) from the tree of SIZE entries to the latest, as JSON.
    Consistency {
        dir: PathBuf,
        #[arg(long, value_name = "SIZE")]
        from: u64,
    },
    /// The entries, one JSON line each with its index.
    Show {
        dir: PathBuf,
        #[arg(long, value_name = "N", default_value_t = 0)]
        from: u64,
        /// Only entries of this kind (start, account, certificate, command,
        /// frequency_event, stop).
        #[arg(long)]
        kind: Option<String>,
    },
}

pub fn run(command: LedgerCommand) -> anyhow::Result<ExitCode> {
    match command {
        LedgerCommand::Verify { dir, key, json } => {
            let vkey = note::read_vkey(&key)?;
            match verify::verify(&dir, &vkey) {
                Ok(r) => {
                    if json {
                        outln!("{}", serde_json::to_string_pretty(&r)?)?;
                    } else {
                        outln!(
                            "OK {}: {} entries, root {}, {} checkpoints consistent, {} hash tiles and {} bundles match",
                            r.origin, r.entries, r.root, r.checkpoints, r.hash_tiles, r.bundles
                        )?;
                        let kinds: Vec<String> =
                            r.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
                        outln!("entries: {}", kinds.join(", "))?;
                        for n in &r.notes {
                            outln!("note: {n}")?;
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        LedgerCommand::Prove { dir, entry } => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&verify::prove(&dir, entry)?)?
            )?;
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Consistency { dir, from } => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&verify::consistency(&dir, from)?)?
            )?;
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Show { dir, from, kind } => {
            for e in verify::entries(&dir, from)? {
                let (i, bytes) = e?;
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .with_context(|| format!("entry {i} is not JSON"))?;
                if kind
                    .as_deref()
                    .is_some_and(|k| v.get("kind").and_then(|x| x.as_str()) != Some(k))
                {
                    continue;
                }
                outln!("{}", serde_json::json!({"index": i, "entry": v}))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Output forms of `certificates`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Table,
    Csv,
    Json,
}

/// `gridminer certificates DIR [--from T] [--to T] [--csv|--json]`: the hourly
/// certificates, each with the ledger index `ledger prove --entry` proves it by.
pub fn certificates(
    dir: &Path,
    from: Option<&str>,
    to: Option<&str>,
    form: Form,
) -> anyhow::Result<ExitCode> {
    let parse = |s: Option<&str>, what: &str| {
        s.map(|s| Timestamp::parse(s).map_err(|e| anyhow::anyhow!("--{what} {s:?}: {e}")))
            .transpose()
    };
    let (from, to) = (parse(from, "from")?, parse(to, "to")?);
    let mut rows: Vec<(u64, Certificate)> = Vec::new();
    for e in verify::entries(dir, 0)? {
        let (i, bytes) = e?;
        if let Ok(Entry::Certificate(c)) = Entry::from_bytes(&bytes) {
            let start = Timestamp::parse(&c.start).map_err(anyhow::Error::msg)?;
            if from.is_some_and(|f| start < f) || to.is_some_and(|t| start >= t) {
                continue;
            }
            rows.push((i, c));
        }
    }
    match form {
        Form::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|(i, c)| {
                    let mut v = serde_json::to_value(c).expect("a certificate serialises");
                    v["ledger_index"] = (*i).into();
                    v
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&v)?)?;
        }
        Form::Csv => {
            outln!("ledger_index,id,site,start,end,source,technology,wh,otherwise_curtailed_wh,grid_intensity_g_per_kwh,co2eq_g,hashes")?;
            for (i, c) in &rows {
                outln!(
                    "{i},{},{},{},{},{},{},{},{},{},{},{}",
                    c.id,
                    c.device.site,
                    c.start,
                    c.end,
                    c.source.as_str(),
                    c.technology,
                    c.wh,
                    c.otherwise_curtailed_wh,
                    c.grid_intensity_g_per_kwh
                        .map_or(String::new(), |x| x.to_string()),
                    c.co2eq_g,
                    c.hashes
                )?;
            }
        }
        Form::Table => {
            outln!(
                "{:>8}  {:<20}  {:<20}  {:<5}  {:>10}  {:>12}  {:>9}  {:>12}",
                "entry",
                "start",
                "end",
                "src",
                "Wh",
                "curtailed Wh",
                "g/kWh",
                "hashes"
            )?;
            for (i, c) in &rows {
                outln!(
                    "{i:>8}  {:<20}  {:<20}  {:<5}  {:>10}  {:>12}  {:>9}  {:>12.4e}",
                    c.start,
                    c.end,
                    c.source.as_str(),
                    c.wh,
                    c.otherwise_curtailed_wh,
                    c.grid_intensity_g_per_kwh
                        .map_or("-".into(), |x| format!("{x:.0}")),
                    c.hashes
                )?;
            }
            let wh: u64 = rows.iter().map(|(_, c)| c.wh).sum();
            let cur: u64 = rows.iter().map(|(_, c)| c.otherwise_curtailed_wh).sum();
            outln!(
                "{} certificates, {wh} Wh, of which {cur} Wh otherwise curtailed",
                rows.len()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `gridminer bench ledger`, in a temporary directory it removes after.
pub fn bench(paced_seconds: f64, entries: u64, json: bool) -> anyhow::Result<ExitCode> {
    if !(0.5..=600.0).contains(&paced_seconds) || entries == 0 {
        anyhow::bail!("--paced-seconds must be 0.5..=600 and --entries at least 1");
    }
    let dir = std::env::temp_dir().join(format!("gridminer-bench-ledger-{}", std::process::id()));
    let result = crate::bench::ledger::ledger(&dir, paced_seconds, entries);
    let _ = std::fs::remove_dir_all(&dir);
    let b = result?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&b)?)?;
    } else {
        out!("{}", crate::bench::ledger::text(&b))?;
    }
    Ok(ExitCode::SUCCESS)
}
