// Herald console: niceties and live views. Forms work without this file.
// - buttons with data-copy="ID" copy the text of element ID;
// - tables with data-refresh="URL" reload their rows from that console
//   JSON endpoint every few seconds;
// - a table with data-debug-stream="URL" (the debug console) shows that
//   session stream's events: pause/resume, clear, bounded;
// - an element with data-overview="URL" (an app's overview) polls that
//   JSON and draws its charts as SVG, and replaces its text figures.
// Text only: data is written with textContent, never parsed as HTML.
(function () {
  'use strict';

  function copy(button) {
    var target = document.getElementById(button.getAttribute('data-copy'));
    if (!target) return;
    var text = target.textContent;
    var done = function () { button.textContent = 'Copied'; };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, function () { select(target); });
    } else {
      select(target);
    }
  }

  function select(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  function refresh(table) {
    var url = table.getAttribute('data-refresh');
    var body = table.querySelector('tbody');
    var note = document.querySelector('[data-empty-note]');
    fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' } })
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (data) {
        if (!data || !Array.isArray(data.channels)) return;
        var rows = document.createDocumentFragment();
        data.channels.forEach(function (c) {
          var tr = document.createElement('tr');
          var name = document.createElement('td');
          var link = document.createElement('a');
          link.href = c.href;
          var code = document.createElement('code');
          code.textContent = c.name;
          link.appendChild(code);
          name.appendChild(link);
          var count = document.createElement('td');
          count.textContent = String(c.subscribers);
          tr.appendChild(name);
          tr.appendChild(count);
          rows.appendChild(tr);
        });
        body.replaceChildren(rows);
        if (note) note.textContent = data.channels.length ? '' : 'No occupied channels.';
      })
      .catch(function () { /* the next tick tries again */ });
  }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  // ---- The debug console -------------------------------------------------

  var DETAILS = {
    publish: function (ev) {
      var d = [['source', ev.source]];
      if (ev.event) d.push(['event', ev.event]);
      d.push(['size', ev.size + ' B' + (ev.truncated ? ' (preview cut)' : '')]);
      d.push(['preview' + (ev.preview_encoding === 'base64' ? ' (base64)' : ''), ev.preview, 'pre']);
      return d;
    },
    connect: function (ev) {
      return [['protocol', ev.protocol], ['user', ev.user_id], ['ip', ev.remote_ip]];
    },
    disconnect: function (ev) {
      return [['code', ev.code + (ev.code_name ? ' ' + ev.code_name : '')], ['reason', ev.reason || '(none)']];
    },
    subscribe: function () { return []; },
    unsubscribe: function () { return []; },
    refusal: function (ev) {
      return [['code', ev.code + ' (' + ev.number + ')'], ['reason', ev.reason]];
    },
    webhook: function (ev) {
      return [['endpoint', ev.endpoint_id], ['event', ev.event_type], ['result', ev.ok ? 'ok' : 'failed'],
        ['status', ev.status], ['latency', ev.latency_ms + ' ms'], ['error', ev.error]];
    },
  };

  function utc(ms) {
    var d = new Date(Number(ms));
    return isNaN(d.getTime()) ? '' : d.toISOString().slice(11, 23);
  }

  function debugRow(ev) {
    var tr = el('tr', null, 'ev-' + (DETAILS[ev.type] || ev.type === 'missed' ? ev.type : 'other'));
    tr.setAttribute('data-type', String(ev.type));
    var details = el('td');
    if (ev.type === 'missed') {
      tr.appendChild(el('td', ''));
      tr.appendChild(el('td', 'missed'));
      tr.appendChild(el('td', ''));
      details.textContent = ev.paused
        ? ev.missed + ' events skipped while paused (more were held than the page keeps).'
        : ev.missed + ' events missed: this page fell behind the stream.';
      tr.appendChild(details);
      return tr;
    }
    tr.appendChild(el('td', utc(ev.timestamp_ms)));
    tr.appendChild(el('td', ev.type));
    var ch = el('td');
    if (ev.channel) ch.appendChild(el('code', ev.channel));
    tr.appendChild(ch);
    var pairs = (DETAILS[ev.type] || function () { return []; })(ev);
    if (ev.connection_id) pairs.push(['connection', ev.connection_id]);
    pairs.push(['node', ev.node]);
    if (ev.dropped) pairs.push(['sampled', ev.dropped + ' earlier events not sent by this node']);
    var dl = el('dl', null, 'details');
    pairs.forEach(function (p) {
      if (p[1] === undefined || p[1] === null || p[1] === '') return;
      var item = el('div');
      item.appendChild(el('dt', p[0]));
      var dd = el('dd');
      dd.appendChild(el(p[2] || 'span', p[1], p[2] === 'pre' ? 'inline' : null));
      item.appendChild(dd);
      dl.appendChild(item);
    });
    details.appendChild(dl);
    tr.appendChild(details);
    return tr;
  }

  function debugConsole(table) {
    var body = table.querySelector('tbody');
    var max = Number(table.getAttribute('data-max')) || 500;
    var status = document.querySelector('[data-debug-status]');
    var pauseButton = document.querySelector('[data-debug-pause]');
    var clearButton = document.querySelector('[data-debug-clear]');
    var paused = false;
    var held = [];
    var skipped = 0;
    var shown = 0;
    var state = 'Connecting…';

    function say() {
      var parts = [state, shown + ' shown'];
      if (paused) parts.push('paused: ' + held.length + ' waiting' + (skipped ? ', ' + skipped + ' skipped (more than ' + max + ' while paused)' : ''));
      status.textContent = parts.join(' · ');
    }

    function show(ev) {
      body.insertBefore(debugRow(ev), body.firstChild);
      shown = Math.min(shown + 1, max);
      while (body.children.length > max) body.removeChild(body.lastChild);
    }

    function take(ev) {
      if (!paused) {
        show(ev);
      } else if (held.length < max) {
        held.push(ev);
      } else {
        skipped += 1;
      }
      say();
    }

    pauseButton.addEventListener('click', function () {
      paused = !paused;
      pauseButton.textContent = paused ? 'Resume' : 'Pause';
      pauseButton.setAttribute('aria-pressed', paused ? 'true' : 'false');
      if (!paused) {
        held.forEach(show);
        if (skipped) show({ type: 'missed', missed: skipped, paused: true });
        held = [];
        skipped = 0;
      }
      say();
    });
    clearButton.addEventListener('click', function () {
      body.replaceChildren();
      shown = 0;
      held = [];
      skipped = 0;
      say();
    });

    var source = new EventSource(table.getAttribute('data-debug-stream'));
    source.addEventListener('open', function () { state = 'Live'; say(); });
    source.addEventListener('error', function () {
      state = source.readyState === EventSource.CLOSED
        ? 'Stopped (signed out? reload the page)'
        : 'Reconnecting…';
      say();
    });
    source.addEventListener('debug', function (m) {
      var ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (ev && typeof ev === 'object') take(ev);
    });
    window.addEventListener('pagehide', function () { source.close(); });
    say();
  }

  // ---- The overview's charts ----------------------------------------------

  var SVG = 'http://www.w3.org/2000/svg';
  var W = 320, H = 140, L = 36, R = 6, T = 8, B = 20;

  function svgEl(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function axes(svg, top) {
    svg.appendChild(svgEl('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, 'class': 'axis' }));
    svg.appendChild(svgEl('line', { x1: L, y1: T, x2: L, y2: H - B, 'class': 'axis' }));
    svg.appendChild(svgEl('text', { x: L - 4, y: T + 8, 'text-anchor': 'end', 'class': 'tick' }, top));
    svg.appendChild(svgEl('text', { x: L - 4, y: H - B, 'text-anchor': 'end', 'class': 'tick' }, 0));
    svg.appendChild(svgEl('text', { x: L, y: H - 4, 'class': 'tick' }, '-30 min'));
    svg.appendChild(svgEl('text', { x: W - R, y: H - 4, 'text-anchor': 'end', 'class': 'tick' }, 'now'));
  }

  function nice(v) {
    if (v <= 0) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var n = v / p;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * p;
  }

  function x(i, n) { return L + (n > 1 ? i * (W - L - R) / (n - 1) : 0); }
  function y(v, top) { return H - B - (v / top) * (H - B - T); }

  function lines(svg, minutes, series) {
    var top = nice(Math.max.apply(null, [0].concat(series.map(function (s) {
      return Math.max.apply(null, minutes.map(function (m) { return Number(m[s.key]) || 0; }));
    }))));
    axes(svg, top);
    series.forEach(function (s, k) {
      var pts = minutes.map(function (m, i) {
        return x(i, minutes.length).toFixed(1) + ',' + y(Number(m[s.key]) || 0, top).toFixed(1);
      });
      svg.appendChild(svgEl('polyline', { points: pts.join(' '), 'class': 'series s' + k }));
    });
  }

  function stacked(svg, minutes, reasons) {
    var totals = minutes.map(function (m) {
      return Object.keys(m.refusals || {}).reduce(function (a, r) { return a + Number(m.refusals[r]); }, 0);
    });
    var top = nice(Math.max.apply(null, [0].concat(totals)));
    axes(svg, top);
    var bw = (W - L - R) / minutes.length;
    minutes.forEach(function (m, i) {
      var base = 0;
      reasons.forEach(function (r, k) {
        var v = Number((m.refusals || {})[r]) || 0;
        if (!v) return;
        var y1 = y(base + v, top), y0 = y(base, top);
        svg.appendChild(svgEl('rect', { x: (L + i * bw + 1).toFixed(1), y: y1.toFixed(1), width: Math.max(bw - 2, 1).toFixed(1), height: Math.max(y0 - y1, 0).toFixed(1), 'class': 'bar b' + (k % 6) }));
        base += v;
      });
    });
  }

  function legend(name, items) {
    var p = document.querySelector('[data-legend="' + name + '"]');
    if (!p) return;
    p.replaceChildren();
    items.forEach(function (it) {
      var span = el('span', null, 'key');
      span.appendChild(el('span', null, 'swatch ' + it[0]));
      span.appendChild(document.createTextNode(it[1]));
      p.appendChild(span);
    });
  }

  function drawOverview(data) {
    var minutes = Array.isArray(data.minutes) ? data.minutes : [];
    var figures = data.figures || {};
    document.querySelectorAll('[data-figure]').forEach(function (f) {
      var v = figures[f.getAttribute('data-figure')];
      if (v !== undefined) f.textContent = String(v);
    });
    var reasons = (data.refusals || []).map(function (r) { return String(r[0]); });
    var rows = document.createDocumentFragment();
    (data.refusals || []).forEach(function (r) {
      var tr = el('tr');
      var td = el('td');
      td.appendChild(el('code', r[0]));
      tr.appendChild(td);
      tr.appendChild(el('td', r[1]));
      rows.appendChild(tr);
    });
    var tbody = document.querySelector('[data-refusals]');
    if (tbody) tbody.replaceChildren(rows);
    var empty = document.querySelector('[data-refusals-empty]');
    if (empty) empty.textContent = reasons.length ? '' : 'No refusals.';
    var charts = {
      connections: function (svg) { lines(svg, minutes, [{ key: 'peak_connections' }]); },
      messages: function (svg) { lines(svg, minutes, [{ key: 'in_per_s' }, { key: 'out_per_s' }]); },
      webhooks: function (svg) { lines(svg, minutes, [{ key: 'webhooks_ok' }, { key: 'webhooks_failed' }]); },
      refusals: function (svg) { stacked(svg, minutes, reasons); },
    };
    document.querySelectorAll('svg[data-chart]').forEach(function (svg) {
      var draw = charts[svg.getAttribute('data-chart')];
      if (!draw) return;
      svg.replaceChildren();
      draw(svg);
    });
    legend('connections', [['s0', 'peak connections per minute']]);
    legend('messages', [['s0', 'in (published) per second'], ['s1', 'out (delivered) per second, dashed']]);
    legend('webhooks', [['s0', 'succeeded per minute'], ['s1', 'failed per minute, dashed']]);
    legend('refusals', reasons.slice(0, 6).map(function (r, k) { return ['b' + k, r]; })
      .concat(reasons.length > 6 ? [['b0', 'colours repeat after six reasons: see the table']] : []));
  }

  function overview(box) {
    var url = box.getAttribute('data-overview');
    var poll = function () {
      fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' } })
        .then(function (res) { return res.ok ? res.json() : null; })
        .then(function (data) { if (data) drawOverview(data); })
        .catch(function () { /* the next tick tries again */ });
    };
    poll();
    setInterval(poll, 5000);
  }

  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('button[data-copy]').forEach(function (b) {
      b.addEventListener('click', function () { copy(b); });
    });
    document.querySelectorAll('table[data-refresh]').forEach(function (t) {
      refresh(t);
      setInterval(function () { refresh(t); }, 3000);
    });
    document.querySelectorAll('table[data-debug-stream]').forEach(debugConsole);
    document.querySelectorAll('[data-overview]').forEach(overview);
  });
})();
