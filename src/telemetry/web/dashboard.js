// gridminer's dashboard: draws the daemon's state document (the one MQTT publishes on
// gridminer/{site}/state), sent once a second as server-sent events from /api/events,
// over the last hour from /api/history. Read-only: it sends nothing back.
//
// Everything from the site (names, payloads, reasons) goes into the page as text
// (textContent), never as markup.
(function () {
  'use strict';

  var HOUR = 3600;
  var COLORS = { pv: '#e0a800', wind: '#2b8cbe', load: '#636363', grid: '#d7301f',
                 mining: '#31a354', target: '#74c476', limit: '#7b3294' };
  var REASON_COLORS = ['#31a354', '#e6550d', '#3182bd', '#756bb1', '#636363', '#d6616b',
                       '#e7ba52', '#17becf', '#8c564b', '#bcbd22'];
  var reasonColor = {};

  var series = { t: [], pv: [], wind: [], load: [], grid: [], mining: [], target: [], limit: [] };
  var reasons = [];
  var power = null;
  var schedule = null;
  var scheduleKey = '';
  var lastState = null;

  function $(id) { return document.getElementById(id); }

  function watts(w) {
    if (w === null || w === undefined || !isFinite(w)) return '–';
    var a = Math.abs(w);
    if (a >= 1e6) return (w / 1e6).toFixed(2) + ' MW';
    if (a >= 1e3) return (w / 1e3).toFixed(a >= 1e5 ? 0 : 1) + ' kW';
    return w.toFixed(0) + ' W';
  }
  function num(x, digits, unit) {
    if (x === null || x === undefined || !isFinite(x)) return '–';
    return x.toFixed(digits) + (unit ? ' ' + unit : '');
  }
  function secs(s) {
    if (s === null || s === undefined || !isFinite(s)) return '–';
    if (s < 10) return s.toFixed(1) + ' s';
    if (s < 120) return s.toFixed(0) + ' s';
    if (s < 7200) return (s / 60).toFixed(0) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }
  function time(iso) {
    if (!iso) return '–';
    var d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleTimeString();
  }
  function text(id, value) {
    var e = $(id);
    if (e && e.textContent !== value) e.textContent = value;
  }

  // A table body rebuilt from rows of cells; each cell a string or {text, cls}.
  function fill(tableId, rows, rowAttrs) {
    var body = $(tableId).tBodies[0];
    var next = document.createElement('tbody');
    rows.forEach(function (cells, i) {
      var tr = document.createElement('tr');
      var attrs = rowAttrs ? rowAttrs[i] : null;
      if (attrs) Object.keys(attrs).forEach(function (k) { tr.setAttribute(k, attrs[k]); });
      cells.forEach(function (c) {
        var td = document.createElement('td');
        if (c !== null && typeof c === 'object') {
          td.textContent = c.text;
          if (c.cls) td.className = c.cls;
        } else {
          td.textContent = c === null || c === undefined ? '–' : String(c);
        }
        tr.appendChild(td);
      });
      next.appendChild(tr);
    });
    body.parentNode.replaceChild(next, body);
  }

  function colorOf(reason) {
    if (!(reason in reasonColor)) {
      reasonColor[reason] = REASON_COLORS[Object.keys(reasonColor).length % REASON_COLORS.length];
    }
    return reasonColor[reason];
  }

  function chartWidth(el) {
    return Math.max(300, (el.clientWidth || el.parentNode.clientWidth || 900) - 10);
  }

  function powerChart() {
    var el = $('chart-power');
    var s = function (label, key, extra) {
      var o = { label: label, stroke: COLORS[key], width: 1.5, value: function (u, v) { return watts(v); } };
      for (var k in extra || {}) o[k] = extra[k];
      return o;
    };
    var opts = {
      width: chartWidth(el), height: 280,
      scales: { x: { time: true } },
      series: [ {}, s('PV', 'pv'), s('wind', 'wind'), s('site load', 'load'),
                s('grid (import +)', 'grid'), s('mining', 'mining', { width: 2.5 }),
                s('target', 'target', { dash: [6, 4] }), s('limit', 'limit', { dash: [2, 3] }) ],
      axes: [ {}, { values: function (u, vals) { return vals.map(watts); }, size: 70 } ],
    };
    power = new uPlot(opts, data(), el);
    el.dataset.drawn = 'yes';
  }

  function data() {
    return [series.t, series.pv, series.wind, series.load, series.grid, series.mining,
            series.target, series.limit];
  }

  function trim() {
    var now = series.t.length ? series.t[series.t.length - 1] : 0;
    var n = 0;
    while (n < series.t.length && series.t[n] < now - HOUR) n++;
    if (n > 0) Object.keys(series).forEach(function (k) { series[k].splice(0, n); });
    while (reasons.length > 1 && reasons[1][0] <= now - HOUR) reasons.shift();
  }

  function timeline() {
    var el = $('timeline');
    var now = series.t.length ? series.t[series.t.length - 1] : Date.now() / 1000;
    // The strip spans what the chart spans: the last hour, or less since the start.
    var first = Math.min(series.t.length ? series.t[0] : now, reasons.length ? reasons[0][0] : now);
    var from = Math.max(now - HOUR, first);
    var span = Math.max(now - from, 1);
    var next = document.createElement('div');
    next.id = 'timeline';
    next.className = 'timeline';
    var seen = {};
    reasons.forEach(function (r, i) {
      var start = Math.max(r[0], from);
      var end = i + 1 < reasons.length ? reasons[i + 1][0] : now;
      if (end <= start) return;
      var seg = document.createElement('span');
      seg.style.width = (100 * (end - start) / span) + '%';
      seg.style.background = colorOf(r[1]);
      seg.title = r[1] + ' from ' + new Date(r[0] * 1000).toLocaleTimeString();
      seg.dataset.reason = r[1];
      next.appendChild(seg);
      seen[r[1]] = true;
    });
    el.parentNode.replaceChild(next, el);
    var legend = $('timeline-legend');
    var items = document.createElement('div');
    items.id = 'timeline-legend';
    items.className = 'legend';
    Object.keys(seen).forEach(function (r) {
      var i = document.createElement('span');
      var sw = document.createElement('i');
      sw.style.background = colorOf(r);
      i.appendChild(sw);
      i.appendChild(document.createTextNode(r));
      items.appendChild(i);
    });
    legend.parentNode.replaceChild(items, legend);
  }

  function scheduleChart(state) {
    var entries = state.price_schedule || [];
    var loads = (state.loads || []).filter(function (l) { return l.breakeven_eur_per_mwh !== null && l.breakeven_eur_per_mwh !== undefined; });
    var key = JSON.stringify(entries) + JSON.stringify(loads.map(function (l) { return [l.name, Math.round(l.breakeven_eur_per_mwh * 100)]; }));
    $('schedule-empty').hidden = entries.length > 0;
    if (key === scheduleKey) return;
    scheduleKey = key;
    var el = $('chart-schedule');
    if (schedule) { schedule.destroy(); schedule = null; }
    if (!entries.length) { el.dataset.drawn = 'empty'; return; }
    var xs = entries.map(function (e) { return new Date(e.start).getTime() / 1000; });
    var prices = entries.map(function (e) { return e.price; });
    var cols = [xs, prices];
    var ser = [{}, { label: 'day-ahead', stroke: '#d7301f', width: 2, paths: uPlot.paths.stepped({ align: 1 }),
                     value: function (u, v) { return num(v, 2, 'EUR/MWh'); } }];
    loads.forEach(function (l, i) {
      cols.push(xs.map(function () { return l.breakeven_eur_per_mwh; }));
      ser.push({ label: 'break-even ' + l.name, stroke: REASON_COLORS[(i + 2) % REASON_COLORS.length], dash: [6, 4],
                 value: function (u, v) { return num(v, 2, 'EUR/MWh'); } });
    });
    schedule = new uPlot({ width: chartWidth(el), height: 220, scales: { x: { time: true } }, series: ser,
                           axes: [{}, { size: 60 }] }, cols, el);
    el.dataset.drawn = 'yes';
  }

  function flow(state) {
    var sig = state.signals || {};
    var v = function (name) { return sig[name] ? sig[name].value : null; };
    text('flow-pv', watts(v('pv_power')));
    text('flow-wind', watts(v('wind_power')));
    text('flow-load', watts(v('site_load')));
    var grid = v('grid_power');
    text('flow-grid-label', grid === null ? 'Grid' : grid >= 0 ? 'Grid import' : 'Grid export');
    text('flow-grid', watts(grid === null ? null : Math.abs(grid)));
    var mining = null;
    (state.loads || []).forEach(function (l) {
      if (l.actual_w !== null && l.actual_w !== undefined) mining = (mining || 0) + l.actual_w;
    });
    text('flow-mining', watts(mining));
    var d = state.decision || {};
    text('flow-target', watts(d.target_w));
    text('decision-reason', d.reason || '–');
    text('decision-limit', d.limit_w === null || d.limit_w === undefined ? 'none' : watts(d.limit_w));
    text('price-now', num(v('price'), 2, 'EUR/MWh'));
    text('hashprice-now', num(v('hashprice'), 2, 'EUR/PH/s/day'));
    ['pv', 'wind', 'load', 'grid'].forEach(function (k) {
      var name = { pv: 'pv_power', wind: 'wind_power', load: 'site_load', grid: 'grid_power' }[k];
      $('card-' + k).classList.toggle('stale', isStale(state, name));
    });
  }

  // Stale: the step said so for a signal that is fed (it has a reading, a configured max
  // age, or a refused value) or that the decision went blind on. A quantity nothing
  // feeds (no wind at a PV site) is "no value", not an alarm.
  function isStale(state, name) {
    var s = (state.signals || {})[name];
    if (!s) return false;
    var reason = (state.decision || {}).reason || '';
    if (reason === 'stale:' + name) return true;
    var fed = s.value !== null || s.age_s !== null || (s.max_age_s !== null && s.max_age_s !== undefined) || !!s.last_rejected;
    return s.stale === true && fed;
  }

  function signals(state) {
    var sig = state.signals || {};
    var rows = [], attrs = [];
    Object.keys(sig).forEach(function (name) {
      var s = sig[name];
      var stale = isStale(state, name);
      var status = stale ? { text: 'stale', cls: 'bad' }
        : s.value === null ? { text: 'no value', cls: 'muted' } : { text: 'ok', cls: 'good' };
      var r = s.last_rejected;
      var rejected = r ? (r.reason + ': "' + r.payload_prefix + '" from ' + r.source + ' at ' + time(r.at)) : '–';
      rows.push([name, s.value === null ? '–' : String(Math.round(s.value * 1000) / 1000), secs(s.age_s),
                 s.max_age_s === undefined || s.max_age_s === null ? '–' : secs(s.max_age_s), status, rejected]);
      attrs.push({ id: 'signal-' + name, 'data-status': status.text });
    });
    fill('signals', rows, attrs);
  }

  function loads(state) {
    var rows = (state.loads || []).map(function (l) {
      var err = l.last_error ? l.last_error.message + ' (' + secs(l.last_error.age_s) + ' ago)' : '–';
      return [l.name, watts(l.target_w), l.units_on, l.commanded ? watts(l.commanded.power_w) : '–',
              watts(l.actual_w), { text: l.confirmation || '–', cls: l.confirmation === 'confirmed' ? 'good' : l.confirmation === 'unconfirmed' ? 'bad' : '' },
              secs(l.confirm_latency_s), num(l.breakeven_eur_per_mwh, 2, 'EUR/MWh'), err];
    });
    fill('loads', rows);
  }

  function fleet(state) {
    var miners = state.fleet || [];
    $('fleet-section').hidden = miners.length === 0;
    var unresponsive = 0;
    var rows = [], attrs = [];
    miners.forEach(function (m) {
      var out = m.state === 'unresponsive';
      if (out) unresponsive++;
      var c = m.last_command;
      var cmd = c ? (c.command.kind + (c.command.watts !== undefined ? ' ' + watts(c.command.watts) : '') +
                     (c.confirmed ? ' confirmed' : c.failed ? ' failed' : c.acked ? ' acked' : ' sent')) : '–';
      rows.push([m.address, m.group, m.model || '–', { text: m.state, cls: out ? 'bad' : m.state === 'mining' ? 'good' : '' },
                 watts(m.power_w), num(m.hashrate_ths, 1, 'TH/s'), cmd, secs(m.confirm_latency_s),
                 { text: out ? 'yes' : 'no', cls: out ? 'bad' : '' }]);
      attrs.push({ 'data-miner': m.address, 'data-state': m.state });
    });
    fill('fleet', rows, attrs);
    text('fleet-summary', miners.length ? miners.length + ' miners, ' + unresponsive + ' unresponsive' : '');
  }

  function commandText(c) {
    if (!c) return 'none';
    var w = c.limit_w !== undefined ? ' to ' + watts(c.limit_w) : c.setpoint_w !== undefined ? ' at ' + watts(c.setpoint_w) : '';
    return c.act + w + ' by ' + c.operator + (c.until ? ' until ' + time(c.until) : '');
  }

  function operator(state) {
    text('command-in-force', commandText(state.operator_command));
    text('failsafe', state.failsafe_w === null || state.failsafe_w === undefined ? '' : 'failsafe: mining capped at ' + watts(state.failsafe_w));
    fill('commands', (state.operator_commands || []).map(function (c) {
      return [c.operator, c.act, watts(c.limit_w !== undefined ? c.limit_w : c.setpoint_w), time(c.received), c.until ? time(c.until) : '–', c.jti || '–'];
    }));
    var acks = state.operator_acks || [];
    fill('acks', acks.map(function (a) {
      return [time(a.at), a.operator || '–', a.act || '–', a.jti || '–',
              { text: a.accepted ? 'accepted' : 'refused', cls: a.accepted ? 'good' : 'bad' }, a.reason || '–', watts(a.effective_limit_w)];
    }), acks.map(function (a) { return { 'data-jti': a.jti || '', 'data-accepted': String(a.accepted) }; }));
  }

  function events(state) {
    fill('events', (state.events || []).map(function (e) {
      var t = e.trigger || {}, r = e.response || {};
      return [time(t.at), t.kind, num(t.frequency_hz, 3, 'Hz'), t.operator || '–', watts(e.mining_before_w), watts(e.cap_w),
              secs(r.last_acked_s), secs(r.last_confirmed_s), JSON.stringify(r.commands), JSON.stringify(r.drop)];
    }));
  }

  function render(state) {
    lastState = state;
    var parts = [flow, signals, loads, fleet, operator, events, scheduleChart];
    parts.forEach(function (f) {
      try { f(state); } catch (e) { console.warn('dashboard: ' + f.name + ': ' + e); }
    });
    text('state-at', state.at ? 'state at ' + time(state.at) : '');
    document.body.dataset.rendered = 'yes';
  }

  function append(sample) {
    var t = sample.t / 1000;
    if (series.t.length && t <= series.t[series.t.length - 1]) return;
    series.t.push(t);
    ['pv', 'wind', 'load', 'grid', 'mining', 'target', 'limit'].forEach(function (k) { series[k].push(sample[k]); });
    if (!reasons.length || reasons[reasons.length - 1][1] !== sample.reason) reasons.push([t, sample.reason]);
    trim();
    if (power) power.setData(data());
    timeline();
  }

  function connect() {
    var es = new EventSource('/api/events');
    es.addEventListener('open', function () { text('connection', 'live'); $('connection').className = 'good'; });
    es.addEventListener('error', function () { text('connection', 'disconnected, retrying'); $('connection').className = 'bad'; });
    es.addEventListener('frame', function (ev) {
      text('connection', 'live');
      $('connection').className = 'good';
      var f = JSON.parse(ev.data);
      render(f.state);
      append(f.sample);
      document.body.dataset.frames = String(Number(document.body.dataset.frames || 0) + 1);
    });
  }

  function start() {
    fetch('/api/history').then(function (r) { return r.json(); }).then(function (h) {
      series.t = h.t.map(function (ms) { return ms / 1000; });
      ['pv', 'wind', 'load', 'grid', 'mining', 'target', 'limit'].forEach(function (k) { series[k] = h[k].slice(); });
      reasons = h.reasons.map(function (r) { return [r[0] / 1000, r[1]]; });
    }).catch(function (e) {
      console.warn('dashboard: no history: ' + e);
    }).then(function () {
      powerChart();
      timeline();
      connect();
    });
    window.addEventListener('resize', function () {
      if (power) power.setSize({ width: chartWidth($('chart-power')), height: 280 });
      scheduleKey = '';
      if (lastState) scheduleChart(lastState);
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
