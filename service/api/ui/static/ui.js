// The status page's one script (served from /ui/static/, loaded with the page's CSP nonce):
// refreshes the live counters (and the applications by health) from /ui/counters. No inline
// handlers, no other requests.
(function () {
  'use strict';
  var box = document.getElementById('counters');
  if (!box) { return; }
  var every = parseInt(box.getAttribute('data-refresh-ms'), 10) || 5000;

  function showCooldowns(cooldowns) {
    var list = document.getElementById('cooldowns');
    if (!list || !Array.isArray(cooldowns)) { return; }
    list.textContent = '';
    cooldowns.forEach(function (c) {
      var li = document.createElement('li');
      var tenant = document.createElement('span');
      tenant.className = 'mono';
      tenant.textContent = String(c.tenant);
      li.appendChild(tenant);
      li.appendChild(document.createTextNode(' ' + Math.ceil(c.remainingS) + ' s left'));
      list.appendChild(li);
    });
  }

  function showApplications(byHealth) {
    if (!byHealth || typeof byHealth !== 'object') { return; }
    Object.keys(byHealth).forEach(function (h) {
      var el = box.querySelector('[data-health="' + h + '"]');
      if (el) { el.textContent = String(byHealth[h]); }
    });
  }

  function show(data) {
    Object.keys(data).forEach(function (k) {
      var el = box.querySelector('[data-counter="' + k + '"]');
      if (el) { el.textContent = String(data[k]); }
    });
    showCooldowns(data.cooldowns);
    showApplications(data.applications);
    var when = document.getElementById('counters-updated');
    if (when) { when.textContent = 'updated ' + new Date().toISOString().slice(11, 19) + ' UTC'; }
  }

  function tick() {
    fetch('/ui/counters', { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
      .then(function (r) {
        if (r.status === 401) { window.location.assign('/ui/login'); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (data) { if (data) { show(data); } })
      .catch(function () {});
  }

  tick();
  setInterval(tick, every);
})();
