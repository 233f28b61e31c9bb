/*! tailor.js: shows tailor's offers in a web page. Apache-2.0. docs/websites.md */
// Plain ES2017, no dependencies. It reads its settings from its own
// <script> tag (data-write-key, data-decide-key, data-user-id,
// data-user-hash, data-budget, data-category, data-product-id, data-host)
// and from a window.tailor object set before it loads; asks decide once
// for every element marked data-tailor-placement; renders each answer
// (text only, unless the offer is trusted); reports Offer Viewed and
// Offer Clicked; and leaves the page as it was when no answer comes
// within the budget. Nothing it does may throw into the page.
(() => {
  'use strict';
  const main = () => {
    const w = window, d = document, VERSION = '1';
    const pre = w.tailor && typeof w.tailor === 'object' ? w.tailor : {};
    if (pre.version) return; // loaded twice
    const script = d.currentScript || d.querySelector('script[src*="tailor.js"]');
    const data = (script && script.dataset) || {};
    const conf = {};
    for (const k of ['host', 'writeKey', 'decideKey', 'userId', 'userHash', 'budget', 'category', 'productId']) {
      conf[k] = pre[k] != null ? String(pre[k]) : data[k];
    }
    // The engine is where the script came from: its src less /v1/tailor.js.
    const src = script && script.src ? script.src : '';
    const host = (conf.host || src.replace(/\/v1\/tailor\.js([?#].*)?$/, '') || '').replace(/\/$/, '');
    const budget = conf.budget > 0 ? +conf.budget : 300;
    const warn = msg => { try { console.warn('tailor.js: ' + msg) } catch (e) { /* no console */ } };

    // Identity: analytics.js's anonymous id and user id when it keeps them
    // (cookie first, then localStorage; its values may be JSON-quoted),
    // else an id of our own kept under the same name, so that analytics.js
    // loaded later adopts it and both send the same id.
    const ANON = 'ajs_anonymous_id', USER = 'ajs_user_id';
    const parse = v => {
      if (v == null || v === '') return null;
      try { v = JSON.parse(v) } catch (e) { return v }
      return typeof v === 'string' && v ? v : typeof v === 'number' ? String(v) : null;
    };
    const cookie = name => {
      try {
        for (const c of d.cookie.split(/; */)) {
          const i = c.indexOf('=');
          if (c.slice(0, i) === name) return parse(decodeURIComponent(c.slice(i + 1)));
        }
      } catch (e) { /* cookies off, or a malformed value */ }
      return null;
    };
    const local = name => { try { return parse(localStorage.getItem(name)) } catch (e) { return null } };
    const keep = (name, v) => {
      try { localStorage.setItem(name, JSON.stringify(v)) } catch (e) { /* storage off */ }
      try {
        d.cookie = name + '=' + encodeURIComponent(v) + '; path=/; max-age=31536000; SameSite=Lax' +
          (location.protocol === 'https:' ? '; Secure' : '');
      } catch (e) { /* cookies off */ }
    };
    const uuid = () => {
      const b = new Uint8Array(16);
      if (w.crypto && crypto.getRandomValues) crypto.getRandomValues(b);
      else for (let i = 0; i < 16; i++) b[i] = Math.random() * 256;
      b[6] = b[6] & 15 | 64;
      b[8] = b[8] & 63 | 128;
      const h = Array.from(b, x => (x + 256).toString(16).slice(1)).join('');
      return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
    };
    let memoryId = null, memoryUser = null; // when storage is off
    const anonymousId = () => {
      let id = cookie(ANON) || local(ANON) || memoryId;
      if (!id) keep(ANON, id = uuid());
      return (memoryId = id);
    };
    const userId = () => conf.userId || memoryUser || cookie(USER) || local(USER) || null;

    // Events go to the collect API as text/plain with the write key in the
    // body: a simple request, with no CORS preflight.
    const pageInfo = () => ({
      path: location.pathname, referrer: d.referrer, search: location.search, title: d.title, url: location.href,
    });
    const message = (type, fields) => {
      const m = Object.assign({
        type, anonymousId: anonymousId(), messageId: 'tjs-' + uuid(), timestamp: new Date().toISOString(),
        context: {
          library: {name: 'tailor.js', version: VERSION}, page: pageInfo(),
          userAgent: navigator.userAgent, locale: navigator.language,
        },
        writeKey: conf.writeKey,
      }, fields);
      const u = fields.userId || userId();
      if (u) m.userId = u;
      return JSON.stringify(m);
    };
    const ready = () => {
      if (host && conf.writeKey) return true;
      warn('no ' + (host ? 'data-write-key' : 'engine address') + ': events are not sent');
      return false;
    };
    // send posts an event and resolves to whether it was stored.
    const send = (type, fields) => {
      if (!ready()) return Promise.resolve(false);
      const url = host + '/v1/' + type[0], body = message(type, fields);
      if (!w.fetch) return Promise.resolve(!!(navigator.sendBeacon && navigator.sendBeacon(url, body)));
      return fetch(url, {method: 'POST', body, keepalive: true, credentials: 'omit'})
        .then(r => r.ok, () => false);
    };
    // beacon posts an event that must survive the page (a click that
    // navigates away).
    const beacon = (type, fields) => {
      if (!ready()) return;
      const url = host + '/v1/' + type[0], body = message(type, fields);
      try {
        if (navigator.sendBeacon && navigator.sendBeacon(url, body)) return;
      } catch (e) { /* fall back to fetch */ }
      if (w.fetch) fetch(url, {method: 'POST', body, keepalive: true, credentials: 'omit'}).catch(() => {});
    };

    // Rendering. Offer content is the offer's content map from the
    // configuration; products are decide's product answers. Text goes in
    // as text; link and image fields become href and src when they are
    // http(s), mailto or tel URLs (or relative); html is markup only for an
    // offer the configuration marks trusted.
    const ATTR = {link: 'href', url: 'href', image: 'src', image_url: 'src'};
    const safeURL = (v, trusted) => {
      try {
        return trusted || /^(https?|mailto|tel):$/.test(new URL(v, location.href).protocol) ? v : null;
      } catch (e) { return null }
    };
    const el = (tag, cls, text) => {
      const e = d.createElement(tag);
      if (cls) e.className = cls;
      if (text != null) e.textContent = text;
      return e;
    };
    // fill fills a template's slots; an element marked data-tailor-if="f"
    // is hidden when the content has no field f.
    const fill = (root, c, trusted) => {
      for (const n of root.querySelectorAll('[data-tailor-if]')) {
        const v = c[n.getAttribute('data-tailor-if')];
        if (v == null || v === '') n.hidden = true;
      }
      for (const slot of root.querySelectorAll('[data-tailor-field]')) {
        const f = slot.getAttribute('data-tailor-field'), v = c[f], attr = ATTR[f];
        const ok = v != null && v !== '' && typeof v !== 'object';
        const u = ok && attr ? safeURL(String(v), trusted) : null;
        if (!ok || (attr && !u)) slot.hidden = true;
        else if (attr) slot.setAttribute(attr, u);
        else if (f === 'html' && trusted) slot.innerHTML = v;
        else slot.textContent = v;
      }
    };
    const offerView = (c, trusted) => {
      const box = el('div', 'tailor-offer');
      if (trusted && typeof c.html === 'string') {
        box.innerHTML = c.html;
        return box;
      }
      const img = c.image && safeURL(String(c.image), trusted);
      if (img) {
        const i = el('img', 'tailor-image');
        i.src = img;
        i.alt = c.title != null ? String(c.title) : '';
        box.appendChild(i);
      }
      const link = c.link && safeURL(String(c.link), trusted);
      if (c.title != null) {
        const t = box.appendChild(el(link ? 'a' : 'strong', 'tailor-title', c.title));
        if (link) t.href = link;
      }
      for (const f of ['text', 'html']) if (c[f] != null) box.appendChild(el('p', 'tailor-text', c[f]));
      if (c.code != null) box.appendChild(el('code', 'tailor-code', c.code));
      return box;
    };
    const productView = p => {
      const li = el('li', 'tailor-product');
      const url = p.url && safeURL(String(p.url));
      const a = li.appendChild(el(url ? 'a' : 'span', 'tailor-title', p.name || p.product_id));
      if (url) a.href = url;
      return li;
    };
    const content = c => typeof c === 'string' ? {title: c} : c && typeof c === 'object' && !Array.isArray(c) ? c : null;

    // Each placement element keeps its own children, to put back when an
    // answer names nothing for it, and the decisions it shows now.
    const saved = new WeakMap(), shown = new WeakMap(), wired = new WeakSet();
    const viewed = new Set(), clicked = new Set();
    const replace = (e, nodes) => {
      while (e.firstChild) e.removeChild(e.firstChild);
      for (const n of nodes) e.appendChild(n);
    };
    const show = (e, name, pa) => {
      let s = saved.get(e);
      if (!s) saved.set(e, s = {tpl: e.querySelector('template'), nodes: Array.from(e.childNodes)});
      const offers = pa && pa.offers ? pa.offers.filter(o => content(o.content)) : null;
      const items = offers || (pa && pa.products) || [];
      if (!items.length) {
        if (e.getAttribute('data-tailor-state') === 'rendered') replace(e, s.nodes);
        e.setAttribute('data-tailor-state', 'default');
        shown.delete(e);
        return;
      }
      const nodes = items.map(it => {
        const c = offers ? content(it.content) : it, trusted = !!offers && it.trusted === true;
        if (!s.tpl) return offers ? offerView(c, trusted) : productView(c);
        const f = s.tpl.content.cloneNode(true);
        fill(f, c, trusted);
        return f;
      });
      if (!offers && !s.tpl) {
        const ul = el('ul', 'tailor-products');
        nodes.forEach(n => ul.appendChild(n));
        nodes.splice(0, nodes.length, ul);
      }
      replace(e, nodes);
      e.setAttribute('data-tailor-state', 'rendered');
      if (!offers) return shown.delete(e);
      e.setAttribute('data-tailor-offer', offers.map(o => o.offer_id).join(' '));
      shown.set(e, offers.map(o => ({decision_id: o.decision_id, offer_id: o.offer_id, placement: name})));
      watch(e);
    };

    // Feedback: Offer Viewed once an element is at least half visible,
    // Offer Clicked on a click in it; each once per decision (a decide call
    // makes new decisions).
    const report = (event, seen, e) => {
      for (const p of shown.get(e) || []) {
        if (seen.has(p.decision_id)) continue;
        seen.add(p.decision_id);
        beacon('track', {event, properties: p});
      }
    };
    const io = w.IntersectionObserver ? new IntersectionObserver(entries => {
      for (const en of entries) if (en.isIntersecting && en.intersectionRatio >= 0.5) report('Offer Viewed', viewed, en.target);
    }, {threshold: [0.5]}) : null;
    const watch = e => {
      if (io) {
        io.unobserve(e); // observing again reports the current visibility
        io.observe(e);
      } else {
        report('Offer Viewed', viewed, e);
      }
      if (wired.has(e)) return;
      wired.add(e);
      e.addEventListener('click', () => {
        try {
          report('Offer Viewed', viewed, e); // a click shows it was seen
          report('Offer Clicked', clicked, e);
        } catch (err) { /* never into the page */ }
      }, true);
    };

    // decide asks for every placement of the page at once, with the key in
    // the query (a simple GET: no preflight), and gives up after the budget.
    let calls = 0;
    const decide = async names => {
      const q = new URLSearchParams({key: conf.decideKey, anonymousId: anonymousId()});
      if (conf.userId) {
        q.set('userId', conf.userId);
        if (conf.userHash) q.set('userHash', conf.userHash);
      }
      for (const n of names) q.append('placement', n);
      q.set('url', location.href);
      if (conf.category) q.set('category', conf.category);
      if (conf.productId) q.set('product_id', conf.productId);
      const ctl = w.AbortController ? new AbortController() : null;
      const start = Date.now(), timer = setTimeout(() => ctl && ctl.abort(), budget);
      try {
        const r = await fetch(host + '/v1/decide?' + q, {signal: ctl ? ctl.signal : undefined, credentials: 'omit'});
        const body = await r.json();
        if (!r.ok) warn('decide answered ' + r.status + ': ' + (body && body.message));
        return r.ok && Date.now() - start <= budget ? body : null;
      } catch (e) {
        return null; // no answer within the budget, or none at all
      } finally {
        clearTimeout(timer);
      }
    };
    const refresh = async () => {
      const mine = ++calls;
      let answer = null;
      try {
        const els = Array.from(d.querySelectorAll('[data-tailor-placement]'));
        const names = Array.from(new Set(els.map(e => e.getAttribute('data-tailor-placement')).filter(Boolean))).slice(0, 20);
        if (!names.length) return null;
        els.forEach(e => e.hasAttribute('data-tailor-state') || e.setAttribute('data-tailor-state', 'pending'));
        if (!host || !conf.decideKey || !w.fetch) warn('no ' + (host ? 'data-decide-key' : 'engine address') + ': the page keeps its content');
        else answer = await decide(names);
        if (mine !== calls) return answer; // a later refresh renders
        const decisions = (answer && answer.decisions) || {};
        for (const e of els) show(e, e.getAttribute('data-tailor-placement'), decisions[e.getAttribute('data-tailor-placement')]);
        if (w.performance && performance.mark) performance.mark('tailor:decided');
        d.dispatchEvent(new CustomEvent('tailor:decided', {detail: answer}));
      } catch (e) {
        warn('refresh failed: ' + e);
      }
      return answer;
    };

    const api = {
      version: VERSION,
      settings: {host, budget, writeKey: conf.writeKey, decideKey: conf.decideKey},
      anonymousId: () => { try { return anonymousId() } catch (e) { return null } },
      userId: () => { try { return userId() } catch (e) { return null } },
      refresh,
      track: (event, properties) => guard(() => send('track', {event, properties: properties || {}})),
      page: (name, properties) => guard(() => send('page', {name, properties: Object.assign(pageInfo(), properties)})),
      identify: (id, traits) => guard(() => {
        if (id) {
          memoryUser = String(id);
          keep(USER, memoryUser);
        }
        return send('identify', {userId: id ? String(id) : userId(), traits: traits || {}});
      }),
    };
    const guard = f => { try { return f() } catch (e) { warn(String(e)); return Promise.resolve(false) } };
    w.tailor = api;
    const start = () => { api.ready = refresh() };
    if (d.readyState === 'loading') {
      api.ready = new Promise(resolve => d.addEventListener('DOMContentLoaded', () => resolve(refresh())));
    } else {
      start();
    }
  };
  try {
    main();
  } catch (e) {
    try { console.warn('tailor.js: ' + e) } catch (e2) { /* no console */ }
  }
})();
