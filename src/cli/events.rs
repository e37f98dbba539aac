//! Glue for `gridminer events --config FILE [--json] [--last N]`: the frequency-response
//! evidence records in the site's events file, whether or not the daemon runs (the file is
//! replaced whole per record, so reading it beside a running daemon is safe).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::telemetry::evidence::file::EventsFile;
use crate::telemetry::evidence::show;

pub fn events(config: &Path, json: bool, last: Option<usize>) -> anyhow::Result<ExitCode> {
    let site = crate::runtime::config::load(config)?;
    let path = site.telemetry.events.path(
        &site.operators.replay_cache_path(&site.config.site),
        &site.config.site,
    );
    let file = EventsFile::new(&path, site.telemetry.events.max_bytes);
    let mut events = file
        .read()
        .with_context(|| format!("reading the events of site {:?}", site.config.site))?;
    // Never dropped unseen: a line that is not a record is named, and the rest shown.
    for (line, error) in &events.bad_lines {
        tracing::warn!(path = %path.display(), line, %error, "Not an evidence record; left in the file");
    }
    if let Some(n) = last {
        let skip = events.records.len().saturating_sub(n);
        events.records.drain(..skip);
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&events.records)?)?;
    } else if events.records.is_empty() {
        outln!(
            "No frequency-response events recorded in {}",
            path.display()
        )?;
    } else {
        out!("{}", show::text(&events.records))?;
    }
    Ok(ExitCode::SUCCESS)
}
