"""The report's inline stylesheet and script (no external fonts, scripts or requests).

The script reads only ``data-*`` attributes written by ``conformance.report.page``, and the
compressed data of ``#report-data`` (``conformance.report.discrepancies.pack``: element trees,
``conformance.report.html.Node``), which it builds with ``createElement`` for a fixed list of
tags and attributes and text nodes, never with ``innerHTML``, so nothing in the results can
become markup.

A new status needs a ``.s-<status>`` colour here (and its place in
``conformance.judge.grouping.STATUS_ORDER``); a new filter is one ``<select data-filter=NAME>``
matching a ``data-NAME="|a|b|"`` list on the rows.
"""

CSS = """
:root { --ok:#2e8540; --fail:#c62828; --error:#ef6c00; --unsup:#9e9e9e; --skip:#cfd8dc;
  --native:#2e7d32; --composed:#1565c0; --ink:#1d2329; --muted:#5f6b76; --line:#dde3e8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); margin: 0 auto; padding: 16px 24px 64px; max-width: 1500px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 2px solid var(--line);
  padding-bottom: 4px; }
p.note, .muted { color: var(--muted); }
nav a { margin-right: 14px; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12.5px; }
pre { background: #f5f7f9; border: 1px solid var(--line); padding: 8px; overflow: auto;
  max-height: 420px; white-space: pre; }
table { border-collapse: collapse; }
th, td { border: 1px solid var(--line); padding: 3px 7px; text-align: left;
  vertical-align: top; }
/* Wide tables scroll in their own box, never the page; a long word wraps where the report
   put a <wbr> in it (conformance.report.html.breakable), and blocks of text wrap anywhere. */
.scroll { overflow-x: auto; max-width: 100%; }
/* the discrepancy table's box scrolls both ways, so its header stays sticky inside it */
.scroll.tall { overflow: auto; max-height: 85vh; }
@media print { .scroll, .scroll.tall { overflow: visible; max-height: none; } }
p, li, h1, h2, h3, h4, .clip { overflow-wrap: anywhere; }
th { background: #f0f3f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px;
  color: #fff; white-space: nowrap; }
.s-pass { background: var(--ok); } .s-fail { background: var(--fail); }
.s-error { background: var(--error); } .s-unsupported { background: var(--unsup); }
.s-skip { background: var(--skip); color: var(--ink); }
.s-conflict { background: #6a1b9a; }
.s-xfail { background: #8d6e63; } .s-xpass { background: #00897b; }
.k-native { background: var(--native); } .k-composed { background: var(--composed); }
.k-reference { background: #6d4c41; } .k-implementation { background: #6a1b9a; }
td.cell { text-align: center; min-width: 72px; cursor: pointer; color: #fff;
  font-variant-numeric: tabular-nums; }
td.cell.s-skip { color: var(--ink); } td.cell.empty { background: #fff; color: var(--muted);
  cursor: default; }
td.cell .sub { font-size: 11px; opacity: .9; display: block; }
.controls { margin: 8px 0; display: flex; flex-wrap: wrap; gap: 10px; align-items: center; }
.controls label { font-size: 13px; color: var(--muted); }
select, input[type=search] { font: inherit; padding: 2px 4px; max-width: 22em; }
table.support td.sup { text-align: center; font-size: 12px; }
td.sup.native { background: #e3f1e5; color: var(--native); }
td.sup.composed { background: #e3ecf8; color: var(--composed); }
td.sup.unsupported { background: #f3f3f3; color: #8a8a8a; }
td.sup.na { color: #c0c6cc; }
table.acc td { vertical-align: middle; white-space: nowrap; }
table.acc td.plot { padding: 0 4px; }
svg.hist .bar-ok { fill: #3b78c2; } svg.hist .bar-bad { fill: var(--fail); }
svg.hist .guide { stroke: #9aa5b1; stroke-dasharray: 2 2; }
svg.hist .baseline { stroke: #c9d1d9; }
svg.hist .m-median { fill: #111; } svg.hist .m-max { fill: var(--fail); }
svg.axis text { font-size: 10px; fill: var(--muted); } svg.axis .tick { stroke: #c9d1d9; }
table.disc { width: 100%; }
table.disc th { cursor: pointer; user-select: none; position: sticky; top: 0; }
table.disc th.sorted-asc::after { content: " \\25B2"; font-size: 10px; }
table.disc th.sorted-desc::after { content: " \\25BC"; font-size: 10px; }
table.disc tr.row { cursor: pointer; } table.disc tr.row:hover { background: #f6f9fc; }
table.disc tr.row.open { background: #fff8e1; }
table.disc td.msg .clip { max-height: 4.4em; overflow: hidden; }
tr.detail > td { background: #fffdf5; padding: 10px 14px; max-width: 1200px;
  white-space: normal; }
div.detail { max-width: min(1440px, calc(100vw - 80px)); position: sticky; left: 0; }
.detail pre { white-space: pre-wrap; overflow-wrap: anywhere; }
.detail h4 { margin: 10px 0 4px; font-size: 14px; }
.detail table.values td { font-family: ui-monospace, Menlo, Consolas, monospace;
  font-size: 12px; }
.detail td.worst { background: #ffe0e0; font-weight: 600; }
.detail tr.this > td { background: #fff3c4; }
table.grid td.gcell { text-align: center; min-width: 76px; cursor: pointer; color: #fff;
  font-variant-numeric: tabular-nums; font-size: 15px; font-weight: 600; }
table.grid td.gcell .sub { font-size: 11px; font-weight: 400; display: block; opacity: .95; }
table.grid td.gcell.ok { background: #e8f5e9; color: var(--ok); cursor: default;
  font-weight: 400; }
table.grid td.gcell.empty { color: var(--muted); cursor: default; font-weight: 400; }
table.grid td.gcell.w-special-value { background: #8e0000; }
table.grid td.gcell.w-semantic { background: #7b5ea7; }
table.grid td.gcell.w-behaviour { background: #d84315; }
table.disc tr.grow { cursor: pointer; } table.disc tr.grow:hover { background: #f6f9fc; }
table.disc tr.grow.open { background: #fff8e1; }
/* short columns never break inside a word; long text breaks at the <wbr> the report put in
   long words (html.breakable), or anywhere in the columns meant for prose */
table.disc th { white-space: nowrap; }
table.disc td.off { min-width: 14em; max-width: 30em; overflow-wrap: anywhere; }
table.disc td.api { min-width: 14em; overflow-wrap: anywhere; }
table.disc code { overflow-wrap: normal; }
table.records th { position: static; }
/* The causes' table is laid out as a grid of rows (the markup stays a table): each row is
   laid out only when it scrolls into view (content-visibility), so sorting or filtering a
   full audit's causes costs a few milliseconds, not a layout of every row.  The columns are
   GROUP_COLUMNS of conformance.report.discrepancies, in order. */
#disc-table { display: block; min-width: 82em; }
#disc-table > thead { display: block; position: sticky; top: 0; z-index: 1; }
#disc-table > tbody { display: block; }
#disc-table > thead > tr, #disc-table > tbody > tr { display: grid;
  grid-template-columns: 7.5em 8.5em minmax(13em, 1.4fr) 11em 5em 6.5em 5.5em 5.5em
    minmax(13em, 1.6fr) 6em; }
#disc-table > thead > tr > th, #disc-table > tbody > tr > td { display: block;
  border-width: 0 0 1px 1px; }
#disc-table > thead th { position: static; }
#disc-table > tbody > tr.grow { content-visibility: auto; contain-intrinsic-size: auto 84px; }
#disc-table > tbody > tr.gdetail > td { grid-column: 1 / -1; }
#disc-table td.off { max-width: none; }
.kind { font-size: 12px; color: var(--muted); }
tr.gdetail > td { background: #fbfcfd; padding: 6px 10px; }
div.gdetail { max-width: min(1320px, calc(100vw - 80px)); position: sticky; left: 0; }
.env-table td { font-size: 13px; }
.legend span { margin-right: 10px; }
/* sections below the first screen are laid out and painted only when scrolled near: the
   accuracy plots and the per-API table of a full audit cost most of a load otherwise */
body > section + section { content-visibility: auto; contain-intrinsic-size: auto 900px; }
@media print { body > section + section { content-visibility: visible; } }
.hidden { display: none; }
"""

JS = """
(function () {
  'use strict';
  function $(sel, root) {
    return Array.prototype.slice.call((root || document).querySelectorAll(sel));
  }
  var STATUSES = ['pass', 'fail', 'error', 'unsupported', 'skip'];
  var WORST = ['fail', 'error', 'unsupported', 'skip', 'pass'];

  // --- overview: recompute each cell for the selected dtype / device / environment -------
  function matches(value, wanted) {
    return !wanted || value === wanted || value === '*';
  }
  function refreshOverview() {
    var want = {};
    $('#overview select[data-dim]').forEach(function (s) { want[s.dataset.dim] = s.value; });
    $('#overview td.cell').forEach(function (td) {
      var counts = [0, 0, 0, 0, 0];
      var data = JSON.parse(td.dataset.counts);
      Object.keys(data).forEach(function (combo) {
        var p = combo.split('|');
        if (matches(p[0], want.dtype) && matches(p[1], want.device) && matches(p[2], want.env)) {
          data[combo].forEach(function (n, i) { counts[i] += n; });
        }
      });
      var total = counts.reduce(function (a, b) { return a + b; }, 0);
      td.className = 'cell';
      if (!total) { td.classList.add('empty'); td.textContent = '–'; return; }
      var worst = WORST.filter(function (s) { return counts[STATUSES.indexOf(s)] > 0; })[0];
      td.classList.add('s-' + worst);
      td.textContent = counts[0] + '/' + total;
      var sub = document.createElement('span');
      sub.className = 'sub';
      sub.textContent = worst === 'pass' ? 'pass' : counts[STATUSES.indexOf(worst)] + ' ' + worst;
      td.appendChild(sub);
      td.title = STATUSES.map(function (s, i) { return counts[i] + ' ' + s; }).join(', ');
    });
  }
  $('#overview select[data-dim]').forEach(function (s) {
    s.addEventListener('change', refreshOverview);
  });

  // --- accuracy view: show the rows of the selected framework and dtype ------------------
  function refreshAccuracy() {
    var filters = $('#accuracy-controls select[data-filter]');
    $('#accuracy-table tr.arow').forEach(function (tr) {
      var ok = filters.every(function (s) {
        return s.value === '' || tr.dataset[s.dataset.filter] === s.value;
      });
      tr.classList.toggle('hidden', !ok);
    });
  }
  $('#accuracy-controls select[data-filter]').forEach(function (s) {
    s.addEventListener('change', refreshAccuracy);
  });

  // --- discrepancy table: one row per cause; filters, sorting, records on demand ---------
  // Filters match a row's data-* list ("|a|b|"): a new filter is one <select data-filter>.
  var table = document.getElementById('disc-table');
  function listed(tr, name, value) {
    return (tr.dataset[name] || '').indexOf('|' + value + '|') >= 0;
  }
  // --- the data behind the discrepancy rows: gzip + base64 in #report-data, decompressed
  // by the browser itself (DecompressionStream); elements built from it with createElement
  // for the tags and attributes below only, text always as text nodes
  var TAGS = ['div', 'p', 'h4', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'span', 'code',
              'pre', 'b', 'wbr'];
  var ATTRIBUTES = ['class', 'title', 'id', 'colspan', 'data-record', 'data-detail',
                    'data-case', 'data-sort', 'data-status', 'data-kind'];
  var DATA = null;
  function unpack() {
    var holder = document.getElementById('report-data');
    if (!holder) { return Promise.resolve({}); }
    if (typeof DecompressionStream === 'undefined') {
      return Promise.reject(new Error('this browser has no DecompressionStream'));
    }
    var raw = atob(holder.dataset.gzip);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i += 1) { bytes[i] = raw.charCodeAt(i); }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Response(stream).text().then(JSON.parse);
  }
  var ready = unpack().then(function (data) { DATA = data; return data; }, function (error) {
    var note = document.getElementById('disc-count');
    if (note) { note.textContent = 'details unavailable: ' + error.message; }
    DATA = {};
    return DATA;
  });
  window.conformanceReady = ready;
  function build(tree) {
    if (typeof tree === 'string') { return document.createTextNode(tree); }
    var e = document.createElement(TAGS.indexOf(tree[0]) >= 0 ? tree[0] : 'span');
    Object.keys(tree[1]).forEach(function (name) {
      if (ATTRIBUTES.indexOf(name) >= 0) { e.setAttribute(name, tree[1][name]); }
    });
    for (var i = 2; i < tree.length; i += 1) { e.appendChild(build(tree[i])); }
    return e;
  }
  function clone(kind, index, into) {
    var tree = DATA && DATA[kind] ? DATA[kind][Number(index)] : null;
    if (tree) { into.appendChild(build(tree)); }
  }
  // a row's detail: a new table row right after it, spanning the table, built from the data
  function toggleBelow(tr, css, fill) {
    var next = tr.nextElementSibling;
    var wasOpen = tr.classList.contains('open');
    if (next && next.classList.contains(css)) { next.parentNode.removeChild(next); }
    tr.classList.remove('open');
    if (wasOpen) { return null; }
    var detail = document.createElement('tr');
    detail.className = css;
    var td = document.createElement('td');
    td.colSpan = tr.cells.length;
    var box = document.createElement('div');
    box.className = css;
    fill(box);
    td.appendChild(box);
    detail.appendChild(td);
    tr.parentNode.insertBefore(detail, tr.nextSibling);
    tr.classList.add('open');
    return box;
  }
  function openRecord(tr) {
    if (!DATA) { ready.then(function () { openRecord(tr); }); return; }
    toggleBelow(tr, 'detail', function (box) {
      clone('comparisons', tr.dataset.detail, box);
      clone('cases', tr.dataset.case, box);
      $('tr[data-record="' + tr.dataset.record + '"]', box).forEach(function (r) {
        r.classList.add('this');
      });
    });
  }
  function openGroup(tr) {
    if (!DATA) { ready.then(function () { openGroup(tr); }); return null; }
    return toggleBelow(tr, 'gdetail', function (box) {
      clone('groups', tr.dataset.groupId, box);
      $('tr.row', box).forEach(function (r) {
        r.addEventListener('click', function () { openRecord(r); });
      });
    });
  }
  if (table) {
    var tbody = table.tBodies[0];
    var rows = $('tr.grow', tbody);
    var counter = document.getElementById('disc-count');
    var closeAll = function () {
      $('tr.gdetail', tbody).forEach(function (tr) { tr.parentNode.removeChild(tr); });
      rows.forEach(function (r) { r.classList.remove('open'); });
    };
    var applyFilters = function () {
      closeAll();
      var filters = $('#discrepancies select[data-filter]').filter(function (s) {
        return s.value !== '';
      });
      var text = (document.getElementById('disc-search').value || '').toLowerCase();
      var shown = 0;
      rows.forEach(function (tr) {
        var ok = filters.every(function (s) {
          if (s.dataset.filter === 'status' && s.value === 'conflict') {
            return tr.dataset.conflict === '1';
          }
          return listed(tr, s.dataset.filter, s.value);
        });
        if (ok && text) { ok = tr.textContent.toLowerCase().indexOf(text) >= 0; }
        tr.classList.toggle('hidden', !ok);
        if (ok) { shown += 1; }
      });
      if (counter) { counter.textContent = shown + ' of ' + rows.length + ' shown'; }
    };
    $('#discrepancies select[data-filter]').forEach(function (s) {
      s.addEventListener('change', applyFilters);
    });
    document.getElementById('disc-search').addEventListener('input', applyFilters);

    $('th', table.tHead).forEach(function (th, column) {
      th.addEventListener('click', function () {
        closeAll();
        var asc = !th.classList.contains('sorted-asc');
        $('th', table.tHead).forEach(function (h) {
          h.classList.remove('sorted-asc', 'sorted-desc');
        });
        th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
        var numeric = th.dataset.type === 'num' || column === 0;
        var keyed = rows.map(function (r) {
          var c = r.cells[column];
          var k = c.dataset.sort || c.textContent;
          return [numeric ? parseFloat(k) : k, r];
        });
        keyed.sort(function (a, b) {
          var d = numeric ? a[0] - b[0] : (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
          return asc ? d : -d;
        });
        rows = keyed.map(function (p) { return p[1]; });
        var fragment = document.createDocumentFragment();
        rows.forEach(function (r) { fragment.appendChild(r); });
        tbody.appendChild(fragment);
      });
    });
    rows.forEach(function (tr) { tr.addEventListener('click', function () { openGroup(tr); }); });
    // #open-N (and conformanceOpen(N)) opens record N: its cause's row, then the record
    window.conformanceOpen = function (n) {
      if (!DATA) { return ready.then(function () { return window.conformanceOpen(n); }); }
      var group = rows.filter(function (r) {
        return (' ' + r.dataset.records + ' ').indexOf(' ' + n + ' ') >= 0;
      })[0];
      if (!group) { return null; }
      group.classList.remove('hidden');
      if (!group.classList.contains('open')) { openGroup(group); }
      var tr = document.getElementById('rec-' + n);
      if (tr && !tr.classList.contains('open')) { openRecord(tr); }
      if (tr) { tr.scrollIntoView(); }
      return tr ? tr.id : null;
    };

    // a cell of the grid or of the per-API table lists its cases: the table, filtered to it
    var showCases = function (td) {
      var set = { fw: td.dataset.fw, api: td.dataset.api, group: td.dataset.group,
                  dtype: td.dataset.dtype, status: '' };
      $('#overview select[data-dim]').forEach(function (s) {
        if (s.value) { set[s.dataset.dim] = s.value; }
      });
      $('#discrepancies select[data-filter]').forEach(function (s) {
        var v = set[s.dataset.filter];
        if (v === undefined) { s.value = ''; return; }
        var has = $('option', s).some(function (o) { return o.value === v; });
        s.value = has ? v : '';
      });
      document.getElementById('disc-search').value = '';
      applyFilters();
      document.getElementById('discrepancies').scrollIntoView();
    };
    $('#overview td.cell, #grid td.gcell').forEach(function (td) {
      td.addEventListener('click', function () { showCases(td); });
    });
    applyFilters();
    var opening = /#open-(\\d+)/.exec(window.location.hash);
    if (opening) { window.conformanceOpen(opening[1]); }
  }
  var columns = document.getElementById('grid-columns');
  if (columns) {
    columns.addEventListener('change', function () {
      $('#grid div[id^="grid-"]').forEach(function (box) {
        box.classList.toggle('hidden', box.id !== 'grid-' + columns.value);
      });
    });
  }
  refreshOverview();
})();
"""
