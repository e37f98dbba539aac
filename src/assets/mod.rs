//! Vendored web assets, embedded in the binary: the chart library uPlot with its licence
//! (provenance and how to update in `PROVENANCE.md` beside this file). The simulator's
//! `report.html` inlines them; the daemon's dashboard serves them. Nothing is fetched
//! from a CDN: a site with no internet still sees its pages.
//!
//! Must not: hold anything but unmodified vendored files.

/// `dist/uPlot.iife.min.js` of the npm package `uplot` 1.6.32.
pub const UPLOT_JS: &str = include_str!("uPlot.iife.min.js");
/// `dist/uPlot.min.css` of the same package.
pub const UPLOT_CSS: &str = include_str!("uPlot.min.css");
/// Its `LICENSE` (MIT), served and inlined beside the script.
pub const UPLOT_LICENSE: &str = include_str!("LICENSE-uPlot");
