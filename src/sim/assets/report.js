// report.html's charts (gridminer, Apache-2.0). Reads the JSON in #report-data, which
// src/sim/html.rs writes, and draws each chart into its #chart-<id> section with uPlot.
// Times are UTC; powers in meta.power_unit; prices in EUR/MWh. A chart whose data the
// run does not have says so in its caption instead of drawing. When all are done,
// <body data-rendered="yes" data-charts="<ids drawn>"> tells a test the page is ready.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var meta = D.meta, k = D.kpis || {};
  var P = meta.power_unit;
  var drawn = [];
  var plots = [];

  // A number for people: `digits` decimals at most, and below 1 three significant
  // figures (a 500 W pool in MW is 0.0005, not 0).
  function fmt(v, digits) {
    if (v == null || !isFinite(v)) return "–";
    if (v !== 0 && Math.abs(v) < 1) return v.toLocaleString("en-GB", { maximumSignificantDigits: 3 });
    return v.toLocaleString("en-GB", { maximumFractionDigits: digits == null ? 1 : digits });
  }
  function eur(v) { return fmt(v, 0) + " EUR"; }
  // A bucket width in words: "1-minute", "1-hour", "1-day".
  function every(s) {
    if (s % 86400 === 0) return fmt(s / 86400, 0) + "-day";
    if (s % 3600 === 0) return fmt(s / 3600, 0) + "-hour";
    if (s % 60 === 0) return fmt(s / 60, 0) + "-minute";
    return fmt(s, 0) + "-second";
  }
  function width() {
    var main = document.getElementById("charts");
    return Math.max(480, Math.min(1200, main.clientWidth - 20));
  }
  function utc(ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }
  function section(id) { return document.getElementById("chart-" + id); }
  function caption(id, text) { section(id).querySelector(".caption").textContent = text; }
  function skip(id, why) {
    var s = section(id);
    s.dataset.skipped = why;
    caption(id, why);
  }
  function plot(id, opts, data) {
    var base = { width: width(), height: 320, tzDate: utc };
    for (var key in opts) base[key] = opts[key];
    var u = new uPlot(base, data, section(id).querySelector(".plot"));
    plots.push(u);
    drawn.push(id);
    return u;
  }
  function line(label, color, unit, extra) {
    var s = {
      label: label, stroke: color, width: 1.5,
      value: function (u, v) { return fmt(v, 2) + " " + unit; },
    };
    for (var key in extra || {}) s[key] = extra[key];
    return s;
  }
  function constant(xs, v) { return xs.map(function () { return v; }); }
  function groupColor(i) { return meta.group_colors[i % meta.group_colors.length]; }
  // Room for grouped tick labels ("1,200,000") beside the axis label.
  function axis(label, extra) {
    var a = { label: label, stroke: "#333", grid: { stroke: "#eee" }, size: 80 };
    for (var key in extra || {}) a[key] = extra[key];
    return a;
  }
  function xaxis(label, extra) {
    var a = axis(label, extra);
    if (!(extra && extra.size)) a.size = 50;
    return a;
  }
  // Stacked series drawn as running sums, the top of the stack first, each filled to
  // zero and painted over by the ones below: the legend shows each part's own value.
  function stacked(parts, unit) {
    var sums = [], run = parts[0].values.map(function () { return 0; });
    parts.forEach(function (p) {
      run = run.map(function (s, i) { var v = p.values[i]; return s + (v == null ? 0 : Math.max(v, 0)); });
      sums.push(run);
    });
    var series = [], data = [];
    for (var i = parts.length - 1; i >= 0; i--) {
      (function (p) {
        series.push({
          label: p.label, stroke: p.color, fill: p.color, width: 1,
          value: function (u, v, si, idx) { return idx == null ? "–" : fmt(p.values[idx], 2) + " " + unit; },
        });
      })(parts[i]);
      data.push(sums[i]);
    }
    return { series: series, data: data };
  }

  function flows() {
    var f = D.flows;
    if (!f) return skip("flows", "No per-step record in this run.");
    var st = stacked(meta.sources.map(function (s, i) {
      return { label: "mining " + s.name, color: s.color,
        values: [f.from_curtailment, f.from_export, f.from_import][i] };
    }), P);
    var series = [{}].concat(st.series, [
      line("generation", "#f2a900", P),
      line("site load", "#555", P),
      // Hidden at first (a click on its legend entry shows it): over a year its line
      // would hide the stack it is the rest of.
      line("export", "#1f77b4", P, { width: 1, show: false }),
      line("export limit", "#1f77b4", P, { dash: [8, 4], width: 2 }),
    ]);
    var data = [f.t].concat(st.data, [f.generation, f.site_load, f.export, constant(f.t, meta.export_limit)]);
    plot("flows", { series: series, axes: [xaxis(""), axis("power (" + P + ")")] }, data);
    caption("flows", "Means over " + every(meta.bucket_s) + " buckets. Mining is stacked by the energy it took: otherwise-curtailed surplus, then forgone export, then grid import. Export limit " + fmt(meta.export_limit, 2) + " " + P + ".");
  }

  function price() {
    var p = D.price;
    if (!p) return skip("price", "No per-step record in this run.");
    var series = [{}, line("day-ahead price", "#222", "EUR/MWh", { width: 1 })];
    var data = [p.t, p.price];
    series.push(line("import price (day-ahead + " + fmt(meta.import_adder, 2) + ")", "#aaa", "EUR/MWh", { width: 1, show: meta.mode === "economic" }));
    data.push(p.price.map(function (v) { return v == null ? null : v + meta.import_adder; }));
    if (meta.export_fixed != null) {
      series.push(line("fixed export value", "#2ca02c", "EUR/MWh", { dash: [4, 2] }));
      data.push(constant(p.t, meta.export_fixed));
    }
    meta.loads.forEach(function (l, i) {
      series.push(line(l.name + " break-even", groupColor(i), "EUR/MWh", { dash: [6, 3], width: 2 }));
      data.push(p.hashprice.map(function (h) { return h == null ? null : h * l.breakeven_per_hashprice; }));
    });
    plot("price", { series: series, axes: [xaxis(""), axis("EUR/MWh")] }, data);
    caption("price", "A group earns more from its hashes than the energy costs while the price is below its break-even line (break-even = hashprice × the group's hash rate per MWh" + (meta.hashprice ? "; mean hashprice " + meta.hashprice.label : "") + "). Forgone export is worth the day-ahead price (or the fixed feed-in), imported energy the import price.");
  }

  function priceDuration() {
    var d = D.duration;
    if (!d || !d.price.x.length) return skip("price-duration", "No prices recorded in this run.");
    var series = [{ label: "hours at or above", value: function (u, v) { return fmt(v, 0) + " h"; } },
      line("day-ahead price", "#222", "EUR/MWh")];
    var data = [d.price.x, d.price.y];
    if (meta.hashprice) {
      meta.loads.forEach(function (l, i) {
        series.push(line(l.name + " break-even at the mean hashprice", groupColor(i), "EUR/MWh", { dash: [6, 3] }));
        data.push(constant(d.price.x, meta.hashprice.mean * l.breakeven_per_hashprice));
      });
    }
    plot("price-duration", {
      scales: { x: { time: false } }, series: series,
      axes: [xaxis("hours of the run at or above the price"), axis("EUR/MWh")],
    }, data);
    caption("price-duration", "The run's " + fmt(d.hours, 0) + " hours sorted by price, highest first: the hours left of where a break-even line crosses the curve are those a group would not pay on energy bought at that price.");
  }

  function curtailmentDuration() {
    var d = D.duration;
    if (!d || !d.curtailment.x.length) return skip("curtailment-duration", "No per-step record in this run.");
    plot("curtailment-duration", {
      scales: { x: { time: false } },
      series: [{ label: "hours at or above", value: function (u, v) { return fmt(v, 0) + " h"; } },
        line("curtailed without mining", "#c5b0d5", P, { fill: "rgba(197,176,213,0.4)" }),
        line("curtailed with mining", "#9467bd", P, { fill: "rgba(148,103,189,0.5)" })],
      axes: [xaxis("hours of the run at or above"), axis("curtailment (" + P + ")")],
    }, [d.curtailment.x, d.curtailment.without_mining, d.curtailment.with_mining]);
    caption("curtailment-duration", "Curtailment at the export limit, sorted: the area between the curves is the otherwise-curtailed energy mining absorbed (" + fmt(100 * (k.absorbed_share || 0), 1) + " % of " + fmt(k.curtailed_without_mining_mwh, 1) + " MWh).");
  }

  // Bars at x = 0, 1, ... labelled with `labels`.
  function barOpts(labels, series, yLabel) {
    return {
      scales: {
        x: { time: false, range: [-0.5, labels.length - 0.5] },
        // Bars stand on zero: an axis from the smallest month would exaggerate.
        y: { range: function (u, min, max) { return uPlot.rangeNum(Math.min(0, min), Math.max(0, max), 0.1, true); } },
      },
      series: [{ label: "month", value: function (u, v) { return v == null ? "–" : labels[Math.round(v)] || ""; } }].concat(series),
      axes: [
        // Every label that fits: about 70 px each ("2018-01"), so a 3-year run shows
        // every second or third month rather than overprinting them.
        xaxis("", { splits: function (u) {
            var every = Math.max(1, Math.ceil(labels.length * 70 / Math.max(70, u.width - 100)));
            return labels.map(function (_, i) { return i; }).filter(function (i) { return i % every === 0; });
          },
          values: function (u, splits) { return splits.map(function (i) { return labels[i] || ""; }); } }),
        axis(yLabel),
      ],
    };
  }
  function bars(label, color, align) {
    return {
      label: label, stroke: color, fill: color, width: 1,
      paths: uPlot.paths.bars({ size: [align ? 0.4 : 0.6, 80], align: align || 0 }),
      points: { show: false },
      value: function (u, v) { return eur(v); },
    };
  }

  function months() {
    var m = k.months || [];
    if (!m.length) return skip("months", "No months in this run.");
    var labels = m.map(function (x) { return x.month; });
    var xs = labels.map(function (_, i) { return i; });
    plot("months", barOpts(labels, [bars("online profit", "#1f77b4")], "EUR"),
      [xs, m.map(function (x) { return x.profit_eur; })]);
    var o = k.optimum;
    caption("months", o
      ? "Online profit per month (total " + eur(k.profit_eur) + "). The clairvoyant optimum is computed for the whole run, not per month: no schedule earns more than " + eur(o.upper_bound_eur) + "; the best schedule found earns " + eur(o.feasible_eur) + "; online is " + fmt(100 * o.ratio, 1) + " % of the bound."
      : "Online profit per month (total " + eur(k.profit_eur) + "). No clairvoyant optimum in this run (simulate --no-optimum).");
  }

  // The site's total of one side of `site` (with or without mining): a number, or the
  // object's total in EUR.
  function total(o) {
    if (typeof o === "number") return o;
    if (!o || typeof o !== "object") return null;
    var names = ["total_eur", "site_total_eur", "net_eur", "site_net_eur", "value_eur"];
    for (var i = 0; i < names.length; i++) if (typeof o[names[i]] === "number") return o[names[i]];
    var key = Object.keys(o).filter(function (x) { return /total.*_eur$/.test(x) && typeof o[x] === "number"; })[0];
    return key ? o[key] : null;
  }
  function site() {
    var s = k.site;
    if (!s) return skip("site", "This run's KPIs have no site economics (kpis.site).");
    var rows = (s.months && s.months.length) ? s.months : [{ month: "whole run", with_mining: s.with_mining, without_mining: s.without_mining, value_added_eur: s.value_added_eur }];
    var labels = rows.map(function (r) { return r.month || ""; });
    var xs = labels.map(function (_, i) { return i; });
    var w = rows.map(function (r) { return total(r.with_mining); });
    var wo = rows.map(function (r) { return total(r.without_mining); });
    var added = rows.map(function (r, i) {
      return typeof r.value_added_eur === "number" ? r.value_added_eur : (w[i] == null || wo[i] == null ? null : w[i] - wo[i]);
    });
    var added_line = line("value mining adds", "#d62728", "EUR", { width: 2, value: function (u, v) { return eur(v); } });
    plot("site", barOpts(labels, [bars("site with mining", "#2ca02c", -1), bars("site without mining", "#aaa", 1), added_line], "EUR"),
      [xs, w, wo, added]);
    caption("site", "The site's value (export revenue less the energy cost of the site load, and with mining its profit) with and without mining, on the same data and tariff. Mining adds " + eur(s.value_added_eur) + " over the run.");
  }

  function utilisation() {
    var d = D.daily;
    if (!d) return skip("utilisation", "No per-step record in this run.");
    var series = [{}], data = [d.t];
    meta.loads.forEach(function (l, i) {
      series.push(line(l.name + " (" + l.units + (l.units === 1 ? " unit, " : " units, ") + fmt(l.max_power, 2) + " " + P + ")", groupColor(i), "%"));
      data.push(d.utilisation[i]);
    });
    plot("utilisation", { series: series, scales: { y: { range: [0, 100] } }, axes: [xaxis(""), axis("mean power, % of rated")] }, data);
    caption("utilisation", "Each group's mean power as a share of its rated power, over " + every(d.bucket_s) + " buckets.");
  }

  function reasons() {
    var d = D.daily;
    if (!d || !meta.reasons || !meta.reasons.length) return skip("reasons", "No decisions recorded in this run.");
    var palette = ["#2ca02c", "#1f77b4", "#aaa", "#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
    var st = stacked(meta.reasons.map(function (r, i) {
      return { label: r.code + ": " + r.meaning, color: palette[i % palette.length], values: d.reasons[i] };
    }), "%");
    plot("reasons", { series: [{}].concat(st.series), scales: { y: { range: [0, 100] } }, axes: [xaxis(""), axis("share of steps (%)")] }, [d.t].concat(st.data));
    caption("reasons", "Why the controller decided what it did, as a share of the steps of each " + every(d.bucket_s) + " bucket (stacked).");
  }

  document.title = meta.scenario + " · gridminer simulation report";
  var hint = document.createElement("p");
  hint.className = "caption";
  hint.textContent = "All times UTC. Drag across a chart to zoom in, double-click to zoom out; click a legend entry to hide or show its series.";
  document.getElementById("charts").prepend(hint);
  [flows, price, priceDuration, curtailmentDuration, months, site, utilisation, reasons].forEach(function (draw) {
    try {
      draw();
    } catch (e) {
      // Seen by the reader and, as a SEVERE console entry, by the browser test.
      console.error("chart " + draw.name + ": " + e);
    }
  });
  window.addEventListener("resize", function () {
    plots.forEach(function (u) { u.setSize({ width: width(), height: u.height }); });
  });
  document.body.dataset.charts = drawn.join(" ");
  document.body.dataset.rendered = "yes";
})();
