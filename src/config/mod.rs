//! Configuration: TOML files in, typed values in units out.
//!
//! What every component's configuration shares. Three steps, as in ripgrep's
//! `LowArgs -> HiArgs`: a file is parsed into a TOML table ([`read_table`], with
//! [`inline_policy`] for `policy = "file"` and [`Override`]s for `--set`/`--vary`), each
//! component deserialises its sections into its own raw shapes and checks their meaning
//! beside its code (`site::config`, `policy::config`, `mqtt::config`, `scenario`,
//! `runtime::config`, ...), and every problem found on the way is gathered here with its
//! key path ([`Problems`]), so `config check` prints them all at once. This module knows
//! no component: it sits below them all.

pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use validate::{
    finite, hashprice_value, non_negative, price, show, show_number, table_of, timestamp, MAX_POWER,
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
    /// The cause is in the message and is not a `source()`: an error chain printed
    /// whole (`{:#}`) would say it twice.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
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
    ///
    /// serde stops at the first bad key, which would hide the others: so each bad key is
    /// reported, taken out of the value, and the rest tried again. What remains is
    /// returned when it deserialises, so that the checks of meaning run on it too (the
    /// problems recorded already make the file invalid). A required key taken out takes
    /// the table holding it with it (an optional `frequency = {...}` whose `hold` is bad);
    /// at the top of the value, or when the error names no key, it ends with `None`.
    pub fn take<T: DeserializeOwned>(&mut self, path: &str, mut value: toml::Value) -> Option<T> {
        // Keys taken out so far, as paths inside `value`.
        let mut removed: Vec<String> = Vec::new();
        for _ in 0..MAX_PROBLEMS_PER_VALUE {
            let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let mut segments: Vec<String> = Vec::new();
            for s in e.path().iter() {
                match s {
                    serde_path_to_error::Segment::Map { key } => segments.push(key.clone()),
                    serde_path_to_error::Segment::Seq { index } => {
                        segments.push(format!("[{index}]"))
                    }
                    _ => {}
                }
            }
            let msg = e.into_inner().message().to_string();
            if let Some(field) = quoted_after(&msg, "missing field ") {
                let mut at = segments.clone();
                at.push(field.to_string());
                if removed.contains(&join_path(&at)) {
                    // Missing because we took it out, reported already: without it, its
                    // table cannot be read either.
                    if !remove_key(&mut value, &segments) {
                        return None;
                    }
                    removed.push(join_path(&segments));
                    continue;
                }
            }
            // An unknown key's path may or may not end in the key itself.
            if let Some(field) = quoted_after(&msg, "unknown field ") {
                if segments.last().map(String::as_str) != Some(field) {
                    segments.push(field.to_string());
                }
            }
            self.push(join(path, &join_path(&segments)), msg.clone());
            if quoted_after(&msg, "missing field ").is_some() || !remove_key(&mut value, &segments)
            {
                return None;
            }
            removed.push(join_path(&segments));
        }
        None
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
    /// broken element is reported. Each element comes with its index in the file, so a
    /// later check names `key[i]` right even when an element before it was dropped.
    pub fn array<T: DeserializeOwned>(
        &mut self,
        table: &mut toml::Table,
        key: &str,
        required: bool,
    ) -> Vec<(usize, T)> {
        self.array_with(table, key, required, |p, at, v| p.take(at, v))
    }

    /// `array`, each element taken by `take` (given the element's key path).
    pub fn array_with<T>(
        &mut self,
        table: &mut toml::Table,
        key: &str,
        required: bool,
        mut take: impl FnMut(&mut Self, &str, toml::Value) -> Option<T>,
    ) -> Vec<(usize, T)> {
        match table.remove(key) {
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| Some((i, take(self, &format!("{key}[{i}]"), v)?)))
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

/// At most this many problems are gathered from one value (a section or an array entry):
/// each costs another pass over it.
const MAX_PROBLEMS_PER_VALUE: usize = 32;

/// `a.b` from a section path and a path inside it (either may be empty).
fn join(path: &str, inner: &str) -> String {
    match (path.is_empty(), inner.is_empty()) {
        (_, true) => path.to_string(),
        (true, false) => inner.to_string(),
        (false, false) if inner.starts_with('[') => format!("{path}{inner}"),
        (false, false) => format!("{path}.{inner}"),
    }
}

/// `a.b[2].c` from its segments.
fn join_path(segments: &[String]) -> String {
    segments.iter().fold(String::new(), |acc, s| join(&acc, s))
}

/// `x` in "...`prefix``x`..." (serde quotes field names in backticks).
fn quoted_after<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &msg[msg.find(prefix)? + prefix.len()..];
    let rest = rest.strip_prefix('`')?;
    Some(&rest[..rest.find('`')?])
}

/// Takes the key at `segments` out of `value`; `false` if there is none to take out (an
/// error about the value as a whole, or about an array element).
fn remove_key(value: &mut toml::Value, segments: &[String]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut v = value;
    for s in parents {
        v = match (s.strip_prefix('[').and_then(|i| i.strip_suffix(']')), v) {
            (Some(i), toml::Value::Array(a)) => {
                match i.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                    Some(x) => x,
                    None => return false,
                }
            }
            (None, toml::Value::Table(t)) => match t.get_mut(s) {
                Some(x) => x,
                None => return false,
            },
            _ => return false,
        };
    }
    match v {
        toml::Value::Table(t) => t.remove(last).is_some(),
        _ => false,
    }
}

/// Reads a TOML file into a table.
pub fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
        path: path.to_path_buf(),
        error,
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

    /// Sets the value at the key path in `table`, making the tables on the way that are
    /// missing. A segment may index an array (`loads[0]`, `a[1][2]`), as the key paths in
    /// problems do; the array and the entry must exist: an index past the end is a
    /// problem, not a new entry.
    pub fn apply(&self, table: &mut toml::Table) -> Result<(), Problem> {
        let dotted = self.path.join(".");
        let problem = |message: String| Problem {
            path: dotted.clone(),
            message,
        };
        let segments = self
            .path
            .iter()
            .map(|s| segment(s).ok_or_else(|| problem(format!("{s:?} is not a key or key[index]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let ((last, last_indices), parents) = segments.split_last().expect("split_once gave a key");
        let mut t = table;
        for (key, indices) in parents {
            let v = if indices.is_empty() {
                t.entry(key.to_string())
                    .or_insert_with(|| toml::Value::Table(Default::default()))
            } else {
                let v = t
                    .get_mut(*key)
                    .ok_or_else(|| problem(format!("there is no array {key} to index")))?;
                element(v, key, indices).map_err(problem)?
            };
            t = match v {
                toml::Value::Table(t) => t,
                _ => return Err(problem(format!("{key} is not a table"))),
            };
        }
        if last_indices.is_empty() {
            t.insert(last.to_string(), self.value.clone());
        } else {
            let v = t
                .get_mut(*last)
                .ok_or_else(|| problem(format!("there is no array {last} to index")))?;
            *element(v, last, last_indices).map_err(problem)? = self.value.clone();
        }
        Ok(())
    }
}

/// `key[1][2]` as `("key", [1, 2])`; `None` for an empty key or a bad index.
fn segment(s: &str) -> Option<(&str, Vec<usize>)> {
    let (key, mut rest) = s.split_at(s.find('[').unwrap_or(s.len()));
    if key.is_empty() {
        return None;
    }
    let mut indices = Vec::new();
    while !rest.is_empty() {
        let (i, after) = rest.strip_prefix('[')?.split_once(']')?;
        indices.push(i.trim().parse().ok()?);
        rest = after;
    }
    Some((key, indices))
}

/// The entry of the array `v` (at `key`) that `indices` point to.
fn element<'a>(
    mut v: &'a mut toml::Value,
    key: &str,
    indices: &[usize],
) -> Result<&'a mut toml::Value, String> {
    let mut at = key.to_string();
    for &i in indices {
        v = match v {
            toml::Value::Array(a) => {
                let n = a.len();
                a.get_mut(i).ok_or_else(|| {
                    format!(
                        "{at} has {n} entr{}; there is no {at}[{i}]",
                        if n == 1 { "y" } else { "ies" }
                    )
                })?
            }
            other => return Err(format!("{at} is {}, not an array", other.type_str())),
        };
        at = format!("{at}[{i}]");
    }
    Ok(v)
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

    /// Issue 12 defect 8: an indexed path (`loads[0].count`) was taken as a key named
    /// `loads[0]`, which validation then called unknown. It names the array entry; an
    /// entry that is not there, or a key that is no array, is a problem at the path.
    #[test]
    fn r12_overrides_reach_into_arrays() {
        let mut t: toml::Table =
            "x = 1\n[[loads]]\nname = \"a\"\n[[loads]]\nname = \"b\"\ngrid = [[1, 2], [3]]"
                .parse()
                .unwrap();
        let set = |t: &mut toml::Table, s: &str| Override::parse(s).unwrap().apply(t);
        set(&mut t, "loads[1].count=0").unwrap();
        set(&mut t, "loads[0].wear.min_on=5m").unwrap();
        set(&mut t, "loads[1].grid[0][1]=7").unwrap();
        let loads = t["loads"].as_array().unwrap();
        assert_eq!(loads[1]["count"].as_integer(), Some(0));
        assert_eq!(loads[0]["wear"]["min_on"].as_str(), Some("5m"));
        assert_eq!(loads[1]["grid"][0][1].as_integer(), Some(7));
        assert!(!t.contains_key("loads[1]"));
        let problem = |t: &mut toml::Table, s: &str| set(t, s).unwrap_err().to_string();
        assert_eq!(
            problem(&mut t, "loads[2].count=1"),
            "loads[2].count: loads has 2 entries; there is no loads[2]"
        );
        assert_eq!(
            problem(&mut t, "x[0]=1"),
            "x[0]: x is integer, not an array"
        );
        assert_eq!(
            problem(&mut t, "sites[0].a=1"),
            "sites[0].a: there is no array sites to index"
        );
        assert_eq!(
            problem(&mut t, "loads[x].count=1"),
            "loads[x].count: \"loads[x]\" is not a key or key[index]"
        );
    }

    /// r9 hole 7: every bad key of a table is reported, and the rest is still read.
    #[test]
    fn every_bad_key_of_a_table_is_reported() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)] // Read only through Debug.
        struct Inner {
            hold: u32,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Outer {
            name: String,
            count: Option<u32>,
            inner: Option<Inner>,
        }
        let v: toml::Table = "name = \"x\"\ncount = \"three\"\ncolour = 1\ninner = { hold = -1 }"
            .parse()
            .unwrap();
        let mut p = Problems::default();
        let got: Option<Outer> = p.take("s", toml::Value::Table(v));
        let paths: Vec<&str> = p.0.iter().map(|x| x.path.as_str()).collect();
        // In key order: a TOML table is sorted.
        assert_eq!(paths, ["s.colour", "s.count", "s.inner.hold"]);
        // What remains is read, for the checks of meaning: the bad optional keys as absent.
        let got = got.expect("the rest reads");
        assert_eq!(
            (got.name.as_str(), got.count, got.inner.is_none()),
            ("x", None, true)
        );
        // A required key that does not read leaves nothing to read.
        let mut p = Problems::default();
        let v: toml::Table = "name = 5\ncolour = 1".parse().unwrap();
        assert!(p.take::<Outer>("s", toml::Value::Table(v)).is_none());
        let paths: Vec<&str> = p.0.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(paths, ["s.colour", "s.name"]);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse_table(Path::new("x.toml"), "a = 1\nb = = 2\n").unwrap_err();
        assert_eq!(e.problems()[0].path, "line 2");
    }
}
