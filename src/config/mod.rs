//! Configuration: TOML files in, typed values in units out.
//!
//! Three steps, as in ripgrep's `LowArgs -> HiArgs`: the file is parsed into a TOML table
//! (`load_table`, which also inlines `policy = "file"` and applies `--vary` overrides),
//! each section is deserialised into the raw shapes of `raw.rs`, and `validate.rs` checks
//! meaning and builds the typed values. Every problem found on the way is gathered with
//! its key path, so `config check` prints them all at once. Nothing here reads data series.

pub mod live;
pub mod raw;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use validate::{
    export_value, validate_loads, validate_policy, validate_scenario, Bounds, ColumnRef,
    HashpriceSource, OperatorEvent, PowerSource, PriceSource, Scenario, SeriesSpec,
};

/// One thing wrong with a config file, at a key path such as `loads[1].rated_power`.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {problems_text}", path.display(), problems_text = list(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Every problem, with its key path (a read error has none).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn list(problems: &[Problem]) -> String {
    let n = problems.len();
    let mut s = format!("{n} problem{}", if n == 1 { "" } else { "s" });
    for p in problems {
        s.push_str("\n  - ");
        s.push_str(&p.to_string());
    }
    s
}

/// Gathers problems while a file is checked.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Deserialises `value` as a `T`, recording any error under `path` (with the path
    /// inside the value appended).
    pub fn take<T: DeserializeOwned>(&mut self, path: &str, value: toml::Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let inner = e.path().to_string();
                let full = if inner == "." || inner.is_empty() {
                    path.to_string()
                } else if path.is_empty() {
                    inner
                } else {
                    format!("{path}.{inner}")
                };
                let msg = e.into_inner().message().to_string();
                self.push(full, msg);
                None
            }
        }
    }

    /// Takes a required section out of `table`.
    pub fn section<T: DeserializeOwned>(
        &mut self,
        table: &mut toml::Table,
        key: &str,
    ) -> Option<T> {
        match table.remove(key) {
            Some(v) => self.take(key, v),
            None => {
                self.push(key, "missing");
                None
            }
        }
    }

    /// Takes an array of tables out of `table`, each element on its own so that every
    /// broken element is reported.
    pub fn array<T: DeserializeOwned>(
        &mut self,
        table: &mut toml::Table,
        key: &str,
        required: bool,
    ) -> Vec<T> {
        match table.remove(key) {
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| self.take(&format!("{key}[{i}]"), v))
                .collect(),
            Some(_) => {
                self.push(
                    key,
                    "expected an array of tables ([[".to_string() + key + "]])",
                );
                Vec::new()
            }
            None if required => {
                self.push(key, "missing");
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    pub fn into_result<T>(self, path: &Path, value: Option<T>) -> Result<T, ConfigError> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ => Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems: self.0,
            }),
        }
    }
}

/// Reads a TOML file into a table.
pub fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_table(path, &text)
}

fn parse_table(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start].matches('\n').count() + 1;
                format!("line {line}")
            })
            .unwrap_or_else(|| "file".into());
        ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: vec![Problem {
                path: at,
                message: format!("TOML syntax: {}", e.message()),
            }],
        }
    })
}

/// A `--vary`/`--set` override: `policy.margin_eur_mwh=5`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub path: Vec<String>,
    pub value: toml::Value,
}

impl Override {
    /// Parses `key.path=value`. The value is read as TOML (`5`, `true`, `"x"`) and
    /// otherwise taken as a string (`15m`, `10 MW`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected key.path=value"))?;
        Ok(Override {
            path: k.trim().split('.').map(str::to_string).collect(),
            value: parse_value(v.trim()),
        })
    }

    fn apply(&self, table: &mut toml::Table) -> Result<(), Problem> {
        let dotted = self.path.join(".");
        let (last, parents) = self.path.split_last().expect("split_once gave a key");
        let mut t = table;
        for p in parents {
            t = match t
                .entry(p.clone())
                .or_insert_with(|| toml::Value::Table(Default::default()))
            {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(Problem {
                        path: dotted,
                        message: format!("{p} is not a table"),
                    })
                }
            };
        }
        t.insert(last.clone(), self.value.clone());
        Ok(())
    }
}

/// Reads an override value as TOML where it parses as one, else as a plain string.
pub fn parse_value(v: &str) -> toml::Value {
    format!("x = {v}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("x"))
        .unwrap_or_else(|| toml::Value::String(v.to_string()))
}

/// Where `policy = "file"` names a policy file, puts that file's `[policy]` table in
/// its place (the path is relative to `path`, the file that names it).
pub fn inline_policy(path: &Path, table: &mut toml::Table) -> Result<(), ConfigError> {
    if let Some(toml::Value::String(policy_file)) = table.get("policy") {
        let policy_path = relative_to(path, policy_file);
        let mut policy_table = read_table(&policy_path)?;
        match policy_table.remove("policy") {
            Some(p) => {
                table.insert("policy".into(), p);
            }
            None => {
                return Err(ConfigError::Invalid {
                    path: policy_path,
                    problems: vec![Problem {
                        path: "policy".into(),
                        message: "missing: a policy file needs a [policy] table".into(),
                    }],
                })
            }
        }
    }
    Ok(())
}

/// Reads a scenario file, inlines its policy file and applies `overrides`.
pub fn load_scenario_table(
    path: &Path,
    overrides: &[Override],
) -> Result<toml::Table, ConfigError> {
    let mut table = read_table(path)?;
    inline_policy(path, &mut table)?;
    let mut problems = Vec::new();
    for o in overrides {
        if let Err(p) = o.apply(&mut table) {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        Ok(table)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// Loads and validates a scenario.
pub fn load_scenario(path: &Path, overrides: &[Override]) -> Result<Scenario, ConfigError> {
    let table = load_scenario_table(path, overrides)?;
    validate_scenario(path, table)
}

/// A path written in a config file is relative to that file's folder.
pub fn relative_to(file: &Path, written: &str) -> PathBuf {
    let p = Path::new(written);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_as_toml_or_string() {
        let o = Override::parse("policy.margin_eur_mwh=5").unwrap();
        assert_eq!(o.path, ["policy", "margin_eur_mwh"]);
        assert_eq!(o.value, toml::Value::Integer(5));
        let o = Override::parse("policy.min_on=15m").unwrap();
        assert_eq!(o.value, toml::Value::String("15m".into()));
        assert!(Override::parse("nothing").is_err());
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse_table(Path::new("x.toml"), "a = 1\nb = = 2\n").unwrap_err();
        assert_eq!(e.problems()[0].path, "line 2");
    }
}
