//! Glue for `config check`: scenario, policy and site files, each told by its keys.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config;

pub fn check(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut bad = 0;
    for f in files {
        match check_file(f) {
            Ok(kind) => outln!("{}: ok ({kind})", f.display())?,
            Err(e) => {
                bad += 1;
                match e {
                    config::ConfigError::Invalid { path, problems } => {
                        outln!(
                            "{}: {} problem{}",
                            path.display(),
                            problems.len(),
                            if problems.len() == 1 { "" } else { "s" }
                        )?;
                        for p in problems {
                            outln!("  {p}")?;
                        }
                    }
                    other => outln!("{other}")?,
                }
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Checks one file, telling its kind by its top-level keys: what `config check` does
/// for each file (the property tests call it directly).
pub fn check_file(path: &Path) -> Result<&'static str, config::ConfigError> {
    let table = config::read_table(path)?;
    if table.contains_key("site_id") {
        crate::runtime::config::load(path)?;
        Ok("site")
    } else if table.contains_key("fixture") || table.contains_key("case") {
        let f = crate::scenario::cases::load(path)?;
        let failing: Vec<config::Problem> = f
            .run()
            .into_iter()
            .enumerate()
            .filter_map(|(i, o)| {
                o.failure.map(|m| config::Problem {
                    path: format!("case[{i}]"),
                    message: format!("{:?}: {m}", o.name),
                })
            })
            .collect();
        if !failing.is_empty() {
            return Err(config::ConfigError::Invalid {
                path: path.to_path_buf(),
                problems: failing,
            });
        }
        Ok("policy")
    } else {
        crate::scenario::load_scenario(path, &[])?;
        Ok("scenario")
    }
}
