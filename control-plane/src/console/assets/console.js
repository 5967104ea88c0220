// Herald console: niceties only — every page works without this file.
// - buttons with data-copy="ID" copy the text of element ID;
// - tables with data-refresh="URL" reload their rows from that console
//   JSON endpoint every few seconds (text only: nothing is parsed as HTML).
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

  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('button[data-copy]').forEach(function (b) {
      b.addEventListener('click', function () { copy(b); });
    });
    document.querySelectorAll('table[data-refresh]').forEach(function (t) {
      refresh(t);
      setInterval(function () { refresh(t); }, 3000);
    });
  });
})();
