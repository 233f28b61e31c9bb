package engine_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tailorcdp/tailor/internal/testbrowser"
	"github.com/tailorcdp/tailor/state"
)

// loadPage is a shop page with tailor.js from the engine and a hero
// placement at the top.
const loadPage = `<!doctype html>
<html><head><title>Shop</title>
<script src="%[1]s/v1/tailor.js" data-write-key=%[2]q data-decide-key=%[3]q></script>
</head><body><div id="hero" data-tailor-placement="hero">Default hero</div><p>The shop.</p></body></html>`

// BenchmarkTailorJSLoad loads a shop page (another origin than the
// engine's) with tailor.js in headless Chromium, once per iteration, for
// a visitor whose profile puts them in a segment, and checks that the
// hero shows the segment's offer. It reports, over the loads, the time
// from the page's navigation start to the personalised content in the
// page (tailor.js's "tailor:decided" performance mark) as p50-ms and
// p99-ms, and the decide call's own time as the browser saw it
// (resource timing) as decide-p50-ms and decide-p99-ms; domready-p50-ms
// is when the page's DOM was ready, which tailor.js waits for to find the
// placements, and which the page alone costs. tailor.js comes
// from the browser's cache after the first load (max-age 300), as on a
// visitor's second page. Run it as
//
//	go test -run '^$' -bench BenchmarkTailorJSLoad -benchtime 50x ./engine/
func BenchmarkTailorJSLoad(b *testing.B) {
	browser := testbrowser.New(b)
	pages, pageURL, e := tailorJSEngine(b)
	pages.HandleFunc("/", htmlPage(fmt.Sprintf(loadPage, e.url, writeKey, decideKey)))
	const visitor = "bench-visitor"
	for i := range 2 {
		if r := e.post(b, "/v1/track", fmt.Sprintf(`{"anonymousId": %q, "event": "Product Viewed", "properties": {"product_id": "p%d"}}`, visitor, i)); r.Status != 200 {
			b.Fatalf("track: %d %s", r.Status, r.Body)
		}
	}
	e.waitProfile(b, visitor, func(v state.View) bool { _, in := v.Segments["browser"]; return in })

	tab := testbrowser.Tab(b, browser)
	ctx, cancel := context.WithTimeout(tab, 10*time.Minute)
	defer cancel()
	// The visitor's anonymous id, where analytics.js and tailor.js keep it
	// (tailor.js reads the cookie first).
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL+"/"), chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`localStorage.setItem("ajs_anonymous_id", JSON.stringify(%[1]q)); document.cookie = "ajs_anonymous_id=%[1]s; path=/"`, visitor))); err != nil {
		b.Fatal(err)
	}
	type timing struct {
		Offer   string  `json:"offer"`
		Decided float64 `json:"decided"`
		Decide  float64 `json:"decide"`
		DOM     float64 `json:"dom"`
	}
	var decided, decide, dom []float64
	for b.Loop() {
		if err := chromedp.Do(ctx, chromedp.Navigate(pageURL+"/")); err != nil {
			b.Fatal(err)
		}
		t, err := chromedp.Run(ctx, chromedp.Evaluate[timing](`tailor.ready.then(() => ({
			offer: document.getElementById("hero").getAttribute("data-tailor-offer") || "",
			decided: performance.getEntriesByName("tailor:decided")[0].startTime,
			decide: performance.getEntriesByType("resource").find(r => r.name.includes("/v1/decide?")).duration,
			dom: performance.getEntriesByType("navigation")[0].domContentLoadedEventStart,
		}))`, chromedp.EvalAwaitPromise))
		if err != nil {
			b.Fatal(err)
		}
		if t.Offer != "deal" {
			b.Fatalf("the hero shows %q, want the segment's offer deal", t.Offer)
		}
		decided, decide, dom = append(decided, t.Decided), append(decide, t.Decide), append(dom, t.DOM)
	}
	b.ReportMetric(percentile(decided, 0.50), "p50-ms")
	b.ReportMetric(percentile(decided, 0.99), "p99-ms")
	b.ReportMetric(percentile(decide, 0.50), "decide-p50-ms")
	b.ReportMetric(percentile(decide, 0.99), "decide-p99-ms")
	b.ReportMetric(percentile(dom, 0.50), "domready-p50-ms")
}

// percentile returns the q-quantile of xs (nearest rank).
func percentile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}
