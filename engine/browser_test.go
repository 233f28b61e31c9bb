package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/internal/testbrowser"
	"github.com/tailorcdp/tailor/internal/testenv"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
)

// ajsVersion is the @segment/analytics-next release the browser test
// loads; scripts/test.sh fetches it from npm into .cache/npm.
const ajsVersion = "1.84.1"

// chromium returns a Chromium to run headless, or skips the test.
func chromium(t *testing.T) string { return testbrowser.Path(t) }

// analyticsNext returns the directory of analytics-next's browser bundle
// (dist/umd), or skips the test.
func analyticsNext(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", ".cache", "npm", "analytics-next-"+ajsVersion, "package", "dist", "umd")
	if _, err := os.Stat(filepath.Join(dir, "index.js")); err != nil {
		testenv.Missing(t, "no @segment/analytics-next %s in %s: scripts/test.sh fetches it with npm", ajsVersion, dir)
	}
	return dir
}

// browserPage is a shop page that loads analytics.js unchanged from the
// npm bundle and points it at tailor with the settings a site gives it
// (apiHost "<host>/v1", protocol http), then sends a page, a track and
// an identify call. Its body's data-result says what the calls resolved
// to.
const browserPage = `<!doctype html>
<html><head><title>Shop</title><script src="/ajs/index.js"></script></head>
<body data-result="pending"><h1>Runner 2</h1>
<script>
(async () => {
  try {
    const [analytics] = await AnalyticsNext.AnalyticsBrowser.load({
      writeKey: %[1]q,
      cdnURL: location.origin,
      cdnSettings: {integrations: {"Segment.io": {apiKey: %[1]q, apiHost: %[2]q, protocol: "http"%[3]s}}},
    }, {disableClientPersistence: true});
    await analytics.page();
    await analytics.track("Product Viewed", {product_id: "p1", category: "shoes"});
    await analytics.identify(%[4]q, {plan: "pro", email: "ada@example.com"});
    document.body.dataset.result = "sent";
  } catch (e) {
    document.body.dataset.result = "error: " + e;
  }
})();
</script></body></html>`

// TestBrowserAnalyticsJS loads a page with analytics.js (from npm,
// unchanged) in headless Chromium, on another origin than tailor's: the
// browser sends its preflights and calls as it would on a shop, and the
// page, track and identify calls land in the visitor's profile, once with
// analytics.js's standard delivery (/v1/p, /v1/t, /v1/i) and once with
// batching (/v1/b).
func TestBrowserAnalyticsJS(t *testing.T) {
	browser := chromium(t)
	bundle := analyticsNext(t)

	pages := http.NewServeMux()
	pageHost := httptest.NewServer(pages)
	t.Cleanup(pageHost.Close)

	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.HTTP.CORSOrigins = []string{pageHost.URL}
	e := startEngine(t, cfg)
	apiHost := strings.TrimPrefix(e.url, "http://") + "/v1"

	files := http.FileServer(http.Dir(bundle))
	pages.Handle("/ajs/", http.StripPrefix("/ajs/", files))
	// analytics.js loads its lazy chunks from <cdnURL>/analytics-next/bundles/.
	pages.Handle("/analytics-next/bundles/", http.StripPrefix("/analytics-next/bundles/", files))
	for _, tc := range []struct {
		name, user, delivery string
	}{
		{"standard", "u-browser", ""},
		{"batching", "u-browser-batch", `, deliveryStrategy: {strategy: "batching", config: {size: 3, timeout: 200}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page := fmt.Sprintf(browserPage, writeKey, apiHost, tc.delivery, tc.user)
			pages.HandleFunc("/"+tc.name, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				fmt.Fprint(w, page)
			})
			// analytics.js resolves its calls also when delivery failed (it
			// keeps the events to retry): the profile is what shows they
			// arrived.
			dom, log := runChromium(t, browser, pageHost.URL+"/"+tc.name)
			if !strings.Contains(dom, `data-result="sent"`) {
				t.Fatalf("the page's calls did not resolve: %.2000s\nChromium's log: %.4000s", dom, log)
			}
			v := e.waitProfile(t, tc.user, func(v state.View) bool {
				return v.Calls["page"] == 1 && v.Events["Product Viewed"] == 1 && v.Calls["identify"] == 1
			})
			var plan string
			json.Unmarshal(v.Traits["plan"], &plan)
			if plan != "pro" {
				t.Errorf("traits %s", v.Traits)
			}
		})
	}
}

// runChromium loads url in a headless Chromium of its own and returns the
// DOM once the page has settled (its network requests done, its timers
// run within a virtual-time budget) and what Chromium logged.
func runChromium(t *testing.T, browser, url string) (dom, log string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--user-data-dir="+t.TempDir(),
		"--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", "--dump-dom", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%.4000s", url, err, stderr.String())
	}
	return string(out), stderr.String()
}
