package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/internal/testbrowser"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/web"
)

// decideKey is the decide key the browser tests' pages carry.
const decideKey = "page-key"

// tailorJSEngine starts an engine with tailorJSConfig and a server for
// the pages that load tailor.js from it, on another origin (pageURL).
func tailorJSEngine(t testing.TB) (pages *http.ServeMux, pageURL string, e *running) {
	pages = http.NewServeMux()
	pageHost := httptest.NewServer(pages)
	t.Cleanup(pageHost.Close)
	return pages, pageHost.URL, startEngine(t, tailorJSConfig(t, pageHost.URL))
}

// tailorJSConfig is an engine for pages: the page host's origin allowed,
// a decide key, a segment two product views away, and offers to show in
// it, to escape and to trust.
func tailorJSConfig(t testing.TB, origin string) *config.Config {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.HTTP.CORSOrigins = []string{origin}
	cfg.HTTP.DecideKeys = config.NewKeys(decideKey)
	cfg.Aggregates = map[string]config.Aggregate{"views": {Event: "Product Viewed", Fn: "count"}}
	cfg.Segments = map[string]string{"browser": "views >= 2"}
	cfg.Placements = map[string]config.Placement{
		"hero": {Fallback: "welcome"}, "plain": {Fallback: "xss"}, "markup": {Fallback: "html"},
	}
	cfg.Offers = []config.Offer{
		{ID: "welcome", Placements: []string{"hero"}, Content: config.JSONContent(`{"title": "Welcome", "link": "#new"}`)},
		{ID: "deal", Placements: []string{"hero"}, When: `segment("browser")`, Priority: 1,
			Content: config.JSONContent(`{"title": "10% off shoes", "code": "SHOES10", "link": "#deal"}`)},
		{ID: "xss", Placements: []string{"plain"}, Content: config.JSONContent(`{"title": "<img src=x onerror=\"window.pwned=1\">",
			"html": "<b id=\"untrusted\">bold</b>", "link": "javascript:window.pwned=2"}`)},
		{ID: "html", Placements: []string{"markup"}, Trusted: true, Content: config.JSONContent(`{"html": "<em id=\"trusted-html\">Hi</em>"}`)},
	}
	return cfg
}

// shopPage is a page of a shop on another origin than tailor's: it loads
// analytics.js unchanged from the npm bundle (apiHost "<engine>/v1") with
// its usual persistence, and tailor.js from the engine, and has a hero
// placement below the fold.
const shopPage = `<!doctype html>
<html><head><title>Shoes</title>
<script src="/ajs/index.js"></script>
<script>
window.analyticsReady = AnalyticsNext.AnalyticsBrowser.load({
  writeKey: %[1]q,
  cdnURL: location.origin,
  cdnSettings: {integrations: {"Segment.io": {apiKey: %[1]q, apiHost: %[2]q, protocol: "http"}}},
}).then(([a]) => a);
</script>
<script src="%[3]s/v1/tailor.js" data-write-key=%[1]q data-decide-key=%[4]q></script>
</head><body>
<h1>Runner 2</h1>
<div style="height: 1500px">Product details</div>
<div id="hero" data-tailor-placement="hero" style="height: 200px">Default hero</div>
</body></html>`

// TestBrowserTailorJS loads shop pages with analytics.js (from npm,
// unchanged) and tailor.js (from the live engine) in headless Chromium,
// on another origin than the engine's, and follows a visitor: the hero
// first shows the fallback; the visitor's page views put them in a
// segment and a reload shows its offer; scrolling to it counts an
// impression and clicking it a click (GET /v1/offers); analytics.js and
// tailor.js share one anonymous id, and an identify merges it into the
// customer's profile, which tailor.js's next page asks about.
func TestBrowserTailorJS(t *testing.T) {
	browser := testbrowser.New(t)
	bundle := analyticsNext(t)
	pages, pageURL, e := tailorJSEngine(t)
	apiHost := strings.TrimPrefix(e.url, "http://") + "/v1"
	files := http.FileServer(http.Dir(bundle))
	pages.Handle("/ajs/", http.StripPrefix("/ajs/", files))
	pages.Handle("/analytics-next/bundles/", http.StripPrefix("/analytics-next/bundles/", files))
	pages.HandleFunc("/shoes", htmlPage(fmt.Sprintf(shopPage, writeKey, apiHost, e.url, decideKey)))

	p := newPage(t, browser)
	run, eval, log := p.do, p.eval, p.log
	// hero waits for the page's decide call and returns what the hero shows.
	hero := func() (offer, text string) {
		t.Helper()
		eval(`tailor.ready.then(() => "")`)
		return eval(`document.getElementById("hero").getAttribute("data-tailor-offer") || ""`),
			eval(`document.getElementById("hero").textContent`)
	}

	run("load the page", chromedp.Navigate(pageURL+"/shoes"))
	if offer, text := hero(); offer != "welcome" || text != "Welcome" {
		t.Fatalf("a new visitor's hero shows %q (%q), want the fallback welcome", offer, text)
	}
	anon := eval(`analyticsReady.then(a => a.user().anonymousId())`)
	if own := eval(`tailor.anonymousId()`); own != anon || anon == "" {
		t.Fatalf("tailor.js's anonymous id %q, analytics.js's %q: they must be one", own, anon)
	}
	eval(`analyticsReady.then(async a => {
		await a.page();
		await a.track("Product Viewed", {product_id: "p1", category: "shoes"});
		await a.track("Product Viewed", {product_id: "p2", category: "shoes"});
		return "";
	})`)
	e.waitProfile(t, anon, func(v state.View) bool { _, in := v.Segments["browser"]; return in && v.Calls["page"] == 1 })

	run("reload", chromedp.Reload())
	if offer, text := hero(); offer != "deal" || !strings.Contains(text, "10% off shoes") || !strings.Contains(text, "SHOES10") {
		t.Fatalf("in the segment, the hero shows %q (%q), want deal", offer, text)
	}
	run("scroll to the hero", chromedp.ScrollIntoView(chromedp.CSS("#hero")))
	waitOffer(t, e, "deal", func(c state.OfferCounts) bool { return c.Impressions == 1 })
	run("click the hero", chromedp.Click(chromedp.CSS("#hero .tailor-title")))
	report := waitOffer(t, e, "deal", func(c state.OfferCounts) bool { return c.Clicks == 1 })
	for _, o := range report.Offers {
		if o.Offer == "welcome" && o.Impressions != 0 || o.Offer == "deal" && o.Impressions != 1 {
			t.Errorf("%s: %d impressions; the first page's hero was never seen, the second's once", o.Offer, o.Impressions)
		}
	}
	v := e.waitProfile(t, anon, func(v state.View) bool { return v.Offers["deal"].LastClick != nil })
	if v.Offers["deal"].Impressions != 1 {
		t.Errorf("the profile counts %d impressions of deal, want 1: %+v", v.Offers["deal"].Impressions, v.Offers)
	}

	// The visitor signs in: analytics.js's identify merges the anonymous
	// profile into the customer's, which tailor.js's next decide call (by
	// the anonymous id: it has no userHash) is answered from.
	eval(`analyticsReady.then(a => a.identify("u-tjs", {plan: "pro"})).then(() => "")`)
	e.waitProfile(t, "u-tjs", func(v state.View) bool {
		return v.Calls["page"] == 1 && v.Events["Product Viewed"] == 2 && v.Calls["identify"] == 1
	})
	run("reload after identify", chromedp.Reload())
	if offer, _ := hero(); offer != "deal" {
		t.Errorf("signed in, the hero shows %q, want deal", offer)
	}
	if u := eval(`tailor.userId()`); u != "u-tjs" {
		t.Errorf("tailor.userId() = %q, want analytics.js's u-tjs", u)
	}
	if ex := log.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught exceptions in the page: %q", ex)
	}
}

// page is a tab of a test's browser, with its console kept.
type page struct {
	t   testing.TB
	tab context.Context
	log *testbrowser.Log
}

func newPage(t testing.TB, browser context.Context) *page {
	tab := testbrowser.Tab(t, browser)
	return &page{t: t, tab: tab, log: testbrowser.Watch(tab)}
}

// do runs actions in the tab, within 30 s.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.tab, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v\nthe page's console:\n%s", what, err, p.log)
	}
}

// eval evaluates expr in the page, awaiting a promise, within 30 s.
func (p *page) eval(expr string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.tab, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: %v\nthe page's console:\n%s", expr, err, p.log)
	}
	return v
}

// waitOffer waits until GET /v1/offers reports offer's counts (summed
// over its placements) as cond wants, and returns the report.
func waitOffer(t testing.TB, e *running, offer string, cond func(state.OfferCounts) bool) decide.Report {
	t.Helper()
	var report decide.Report
	waitFor(t, "offer "+offer+"'s counts", 30*time.Second, func() bool {
		resp := do(t, "GET", e.url+"/v1/offers", readKey, nil, nil)
		report = decide.Report{}
		resp.json(t, &report)
		var sum state.OfferCounts
		for _, o := range report.Offers {
			if o.Offer == offer {
				sum.Impressions += o.Impressions
				sum.Clicks += o.Clicks
			}
		}
		return cond(sum)
	})
	return report
}

// htmlPage serves page as HTML.
func htmlPage(page string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	}
}

// escapePage shows offers whose content carries markup: as text, unless
// the offer is trusted; once through the default rendering and once
// through a template.
const escapePage = `<!doctype html>
<html><head><title>Escaping</title>
<script src="%[1]s/v1/tailor.js" data-write-key=%[2]q data-decide-key=%[3]q></script>
</head><body>
<div id="plain" data-tailor-placement="plain">Default</div>
<div id="templated" data-tailor-placement="plain">Default
<template><a class="t-link" data-tailor-field="link"><span class="t-title" data-tailor-field="title"></span></a><i class="t-if-code" data-tailor-if="code">Code: <i class="t-code" data-tailor-field="code"></i></i><i class="t-if-title" data-tailor-if="title">Title</i></template>
</div>
<div id="markup" data-tailor-placement="markup">Default</div>
</body></html>`

// TestBrowserTailorJSEscapes: an offer's title holding an <img onerror>
// shows as text, its html as text, its javascript: link is not linked;
// a trusted offer's html is markup.
func TestBrowserTailorJSEscapes(t *testing.T) {
	browser := testbrowser.New(t)
	pages, pageURL, e := tailorJSEngine(t)
	pages.HandleFunc("/", htmlPage(fmt.Sprintf(escapePage, e.url, writeKey, decideKey)))
	tab := testbrowser.Tab(t, browser)
	log := testbrowser.Watch(tab)
	ctx, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL+"/")); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`tailor.ready.then(() => {
		const q = s => document.querySelector(s);
		return {
			state: q("#plain").dataset.tailorState,
			title: q("#plain .tailor-title").textContent,
			titleTag: q("#plain .tailor-title").tagName,
			text: q("#plain .tailor-text").textContent,
			images: document.querySelectorAll("img").length,
			untrusted: !!q("#untrusted"),
			templatedTitle: q("#templated .t-title").textContent,
			templatedHref: q("#templated .t-link").hasAttribute("href"),
			templatedLinkHidden: q("#templated .t-link").hidden,
			codeHidden: q("#templated .t-code").hidden,
			ifCodeHidden: q("#templated .t-if-code").hidden,
			ifTitleHidden: q("#templated .t-if-title").hidden,
			template: !!q("#templated template"),
			trusted: q("#markup #trusted-html") ? q("#markup #trusted-html").textContent : null,
			pwned: String(window.pwned),
		};
	})`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%v\nthe page's console:\n%s", err, log)
	}
	const img = `<img src=x onerror="window.pwned=1">`
	want := map[string]any{
		"state": "rendered", "title": img, "titleTag": "STRONG", "text": `<b id="untrusted">bold</b>`,
		"images": 0.0, "untrusted": false, "templatedTitle": img, "templatedHref": false,
		"templatedLinkHidden": true, "codeHidden": true,
		"ifCodeHidden": true, "ifTitleHidden": false, "template": false, "trusted": "Hi", "pwned": "undefined",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %#v, want %#v", k, got[k], w)
		}
	}
	if ex := log.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught exceptions in the page: %q", ex)
	}
}

// budgetPage has a placement with default content and tailor.js pointed
// at an engine that answers too late or not at all.
const budgetPage = `<!doctype html>
<html><head><title>Budget</title>
<script src="/v1/tailor.js" data-host=%[1]q data-write-key="w" data-decide-key="d" data-budget="300"></script>
</head><body><div id="hero" data-tailor-placement="hero"><b>Default hero</b></div></body></html>`

// TestBrowserTailorJSBudget: when decide answers after the budget, or
// the engine is down, the page keeps its default content, the late
// call is abandoned, and nothing throws into the page.
func TestBrowserTailorJSBudget(t *testing.T) {
	browser := testbrowser.New(t)
	script, err := web.TailorJS()
	if err != nil {
		t.Fatal(err)
	}
	// slow serves tailor.js and pages, and answers decide after 10 s
	// unless the browser gives up first.
	var asked, abandoned atomic.Int32
	slow := http.NewServeMux()
	slow.HandleFunc("/v1/tailor.js", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", script.ContentType)
		w.Write(script.Body)
	})
	slow.HandleFunc("/v1/decide", func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		select {
		case <-r.Context().Done():
			abandoned.Add(1)
		case <-time.After(10 * time.Second):
			w.Header().Set("Access-Control-Allow-Origin", "*")
			fmt.Fprint(w, `{"key":"a","known":false,"personalised":false,"decisions":{"hero":{"offers":[{"offer_id":"late","decision_id":"hero~late~t~1~1","fallback":false,"content":{"title":"Too late"}}]}}}`)
		}
	})
	host := httptest.NewServer(slow)
	t.Cleanup(host.Close)
	// down is an address where nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	slow.HandleFunc("/slow", htmlPage(fmt.Sprintf(budgetPage, host.URL)))
	slow.HandleFunc("/down", htmlPage(fmt.Sprintf(budgetPage, down)))

	for _, tc := range []struct{ name, path string }{{"decide too slow", "/slow"}, {"engine down", "/down"}} {
		t.Run(tc.name, func(t *testing.T) {
			tab := testbrowser.Tab(t, browser)
			log := testbrowser.Watch(tab)
			ctx, cancel := context.WithTimeout(tab, 30*time.Second)
			defer cancel()
			if err := chromedp.Do(ctx, chromedp.Navigate(host.URL+tc.path)); err != nil {
				t.Fatal(err)
			}
			got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`tailor.ready.then(answer => {
				const h = document.getElementById("hero");
				return JSON.stringify([answer, h.dataset.tailorState, h.innerHTML]);
			})`, chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatalf("%v\nthe page's console:\n%s", err, log)
			}
			var state []any
			json.Unmarshal([]byte(got), &state)
			if len(state) != 3 || state[0] != nil || state[1] != "default" || state[2] != "<b>Default hero</b>" {
				t.Errorf("answer, state, hero: %s; want null, default and the default content", got)
			}
			if ex := log.Exceptions(); len(ex) > 0 {
				t.Errorf("uncaught exceptions in the page: %q", ex)
			}
		})
	}
	// The browser gave up on the late answer rather than leaving it to
	// come in after the page moved on.
	waitFor(t, "the slow decide call to be abandoned", 15*time.Second, func() bool { return abandoned.Load() == 1 })
	if asked.Load() != 1 {
		t.Errorf("%d decide calls, want one per page", asked.Load())
	}
}
