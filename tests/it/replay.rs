//! Aligning series of different resolutions to the control step, and the documented
//! choices for duplicated timestamps, missing intervals and empty cells.

use std::path::PathBuf;
use std::time::Duration;

use gridminer::clock::Timestamp;
use gridminer::signal::replay::read_series;
use gridminer::signal::series::Interpolate;
use gridminer::signal::series::SeriesSpec;

use super::support::root;
use polars::prelude::*;

fn spec(dir: &std::path::Path, name: &str, text: &str) -> SeriesSpec {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, text).unwrap();
    SeriesSpec {
        name: name.into(),
        path,
        time_column: "timestamp".into(),
        max_age: None,
    }
}

fn t(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

#[test]
fn an_hourly_price_holds_for_its_four_quarters() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(dir.path(), "p.csv", "timestamp,price\n2018-01-01T00:00:00Z,10\n2018-01-01T01:00:00Z,-20\n2018-01-01T02:00:00Z,30\n");
    let table = read_series(&s, &["price"]).unwrap();
    assert_eq!(table.resolution, 3_600_000);
    let v = table.resample(
        "price",
        1.0,
        t("2018-01-01T00:00:00Z"),
        Duration::from_secs(900),
        12,
        Interpolate::Hold,
    );
    assert_eq!(
        v,
        [10.0, 10.0, 10.0, 10.0, -20.0, -20.0, -20.0, -20.0, 30.0, 30.0, 30.0, 30.0]
    );
}

#[test]
fn linear_interpolation_runs_between_interval_midpoints() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(
        dir.path(),
        "g.csv",
        "timestamp,mw\n2018-01-01T00:00:00Z,0\n2018-01-01T00:15:00Z,4\n2018-01-01T00:30:00Z,8\n",
    );
    let table = read_series(&s, &["mw"]).unwrap();
    let v = table.resample(
        "mw",
        1e6,
        t("2018-01-01T00:00:00Z"),
        Duration::from_secs(300),
        9,
        Interpolate::Linear,
    );
    // Midpoints at 7.5, 22.5 and 37.5 minutes: straight lines between them; before the
    // first midpoint the first value holds, and the last interval (no right neighbour)
    // holds its own value after its midpoint.
    let expect = |minute: f64| -> f64 {
        if minute < 7.5 {
            0.0
        } else if minute < 37.5 {
            (minute - 7.5) / 15.0 * 4.0
        } else {
            8.0
        }
    };
    for (k, x) in v.iter().enumerate() {
        let m = k as f64 * 5.0;
        assert!(
            (x / 1e6 - expect(m)).abs() < 1e-9,
            "minute {m}: {x} vs {}",
            expect(m)
        );
    }
}

#[test]
fn duplicates_are_averaged_gaps_are_counted_and_left_empty() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "timestamp,kw\n\
        2018-10-28T00:00:00Z,1\n\
        2018-10-28T00:15:00Z,2\n\
        2018-10-28T00:15:00Z,4\n\
        2018-10-28T00:30:00Z,\n\
        2018-10-28T01:30:00Z,5\n\
        2018-10-28T01:45:00Z,6\n";
    let s = spec(dir.path(), "k.csv", csv);
    let table = read_series(&s, &["kw"]).unwrap();
    assert_eq!(table.duplicates, 1);
    assert_eq!(
        table.missing_intervals, 3,
        "00:45, 01:00, 01:15 are missing"
    );
    assert_eq!(table.empty_cells, 1);
    let v = table.resample(
        "kw",
        1e3,
        t("2018-10-28T00:00:00Z"),
        Duration::from_secs(900),
        8,
        Interpolate::Hold,
    );
    assert_eq!(&v[..2], &[1000.0, 3000.0], "the duplicate is averaged");
    assert!(
        v[2..6].iter().all(|x| x.is_nan()),
        "empty cell and missing intervals stay empty: {v:?}"
    );
    assert_eq!(&v[6..], &[5000.0, 6000.0]);
}

#[test]
fn parquet_series_read_like_csv() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.parquet");
    let mut df = df!(
        "timestamp" => ["2018-01-01T00:00:00Z", "2018-01-01T01:00:00Z", "2018-01-01T02:00:00Z"],
        "price" => [1.5f64, 2.5, 3.5],
    )
    .unwrap();
    ParquetWriter::new(std::fs::File::create(&path).unwrap())
        .finish(&mut df)
        .unwrap();
    let s = SeriesSpec {
        name: "s".into(),
        path,
        time_column: "timestamp".into(),
        max_age: None,
    };
    let table = read_series(&s, &["price"]).unwrap();
    assert_eq!(table.columns["price"], vec![1.5, 2.5, 3.5]);
    assert_eq!(table.resolution, 3_600_000);
}

/// Issue 12 defect 8: a parquet file whose time column is a native timestamp or date
/// (what pandas and pyarrow write) failed with polars' internal message. This build
/// reads no native time types (they would double polars' build), so the error says what
/// the column is and what to write instead. The files were written by pyarrow (see
/// `tests/data/README.md`).
#[test]
fn r12_defect8_a_native_parquet_time_column_gets_a_clear_error() {
    for (file, kind) in [
        ("native-timestamp.parquet", "Timestamp"),
        ("native-date.parquet", "Date32"),
    ] {
        let spec = SeriesSpec {
            name: "s".into(),
            path: root().join("tests/data").join(file),
            time_column: "timestamp".into(),
            max_age: None,
        };
        let e = read_series(&spec, &["price"]).unwrap_err().to_string();
        assert!(e.contains(file), "{e}");
        assert!(
            e.contains("column \"timestamp\" is a native parquet"),
            "{e}"
        );
        assert!(e.contains(kind), "{e}");
        assert!(
            e.contains("RFC 3339 text or Int64 epoch milliseconds"),
            "{e}"
        );
    }
}
