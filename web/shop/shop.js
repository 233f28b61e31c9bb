// The demo shop's own script. It sends the shop's events through
// analytics.js when the page loaded it, else through tailor.js's own
// tailor.track and tailor.page, and shows what tailor knows of the
// visitor (read on the shop's server with the read key: /me).
(() => {
  const cfg = document.currentScript.dataset;
  const ajs = window.AnalyticsNext ? AnalyticsNext.AnalyticsBrowser.load({
    writeKey: cfg.writeKey,
    cdnURL: location.origin,
    cdnSettings: {integrations: {'Segment.io': {apiKey: cfg.writeKey, apiHost: cfg.apiHost, protocol: cfg.protocol}}},
  }) : null;
  const send = (method, ...args) => ajs ? ajs[method](...args) : window.tailor[method](...args);
  const cart = () => { try { return JSON.parse(localStorage.getItem('demo_cart')) || [] } catch (e) { return [] } };
  const total = items => items.reduce((sum, p) => sum + p.price, 0);
  const item = p => ({product_id: p.id, name: p.name, category: p.category, price: p.price, url: '/p/' + p.id, quantity: 1});
  const showCart = () => {
    const items = cart();
    document.getElementById('cart-count').textContent = items.length;
    const list = document.getElementById('cart');
    if (!list) return;
    for (const p of items) list.appendChild(Object.assign(document.createElement('li'), {textContent: p.name + ' · ' + p.price + ' €'}));
    document.getElementById('total').textContent = items.length ? 'Total: ' + total(items) + ' €' : 'Your cart is empty.';
  };
  const showYou = async () => {
    const anon = window.tailor.anonymousId();
    document.getElementById('anon').textContent = anon;
    try {
      const me = await (await fetch('/me?anonymousId=' + encodeURIComponent(anon))).json();
      document.getElementById('segments').textContent = me.segments.length ? me.segments.join(', ') : 'none yet';
    } catch (e) {
      document.getElementById('segments').textContent = 'not known yet';
    }
  };
  // Which offer each placement shows, as tailor.js decided.
  document.addEventListener('tailor:decided', e => {
    const shown = [];
    for (const [placement, answer] of Object.entries((e.detail && e.detail.decisions) || {})) {
      for (const o of answer.offers || []) shown.push(placement + ': ' + o.offer_id);
    }
    document.getElementById('shown').textContent = shown.length ? shown.join(', ') : 'the page\'s own content';
  });
  window.shop = {
    // start sends the page's events, then shows the cart and the visitor.
    start: async (event, props) => {
      showCart();
      await send('page');
      if (event) await send('track', event, props);
      setTimeout(showYou, 300); // the engine applies events within milliseconds
    },
    add: async p => {
      localStorage.setItem('demo_cart', JSON.stringify(cart().concat([p])));
      await send('track', 'Product Added', item(p));
      location.href = '/cart';
    },
    checkout: async () => {
      await send('track', 'Checkout Started', {products: cart().map(item), value: total(cart())});
      location.href = '/checkout';
    },
    order: async () => {
      const items = cart();
      await send('track', 'Order Completed', {order_id: 'o-' + Date.now(), revenue: total(items), currency: 'EUR', products: items.map(item)});
      localStorage.removeItem('demo_cart');
      location.href = '/order';
    },
    reset: () => {
      for (const name of ['ajs_anonymous_id', 'ajs_user_id', 'ajs_user_traits', 'demo_cart']) {
        localStorage.removeItem(name);
        document.cookie = name + '=; path=/; max-age=0';
      }
      location.href = '/';
    },
  };
})();
