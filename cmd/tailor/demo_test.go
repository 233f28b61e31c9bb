package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tailorcdp/tailor/internal/testbrowser"
	"github.com/tailorcdp/tailor/internal/testenv"
)

// envScreenshot names the file TestDemo writes a screenshot of the shop
// to: make the README's with
//
//	TAILOR_DEMO_SCREENSHOT=$PWD/docs/img/demo-shop.png go test -run 'TestDemo/analytics.js' ./cmd/tailor
const envScreenshot = "TAILOR_DEMO_SCREENSHOT"

// TestDemo runs `tailor demo` (the sample configuration, its embedded
// broker) and walks its shop in headless Chromium as a visitor would,
// with analytics.js sending the events and with tailor.js's own
// tailor.track: the home page's banner shows the welcome offer, then,
// after a pair of shoes was viewed, the new season's shoes, after an
// add to cart the cart reminder, and after the order (of a bag) neither.
func TestDemo(t *testing.T) {
	browser := testbrowser.New(t)
	for _, tc := range []struct{ name, ajs string }{
		{"analytics.js", filepath.Join("..", "..", ajsCache)},
		{"tailor.track", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ajs != "" {
				if _, err := os.Stat(filepath.Join(tc.ajs, "index.js")); err != nil {
					testenv.Missing(t, "no @segment/analytics-next in %s: scripts/test.sh fetches it with npm", tc.ajs)
				}
			}
			shop := startDemo(t, tc.ajs)
			walkDemo(t, testbrowser.Tab(t, browser), shop)
		})
	}
}

// startDemo runs `tailor demo` until t ends and returns the shop's URL.
func startDemo(t *testing.T, ajs string) string {
	t.Helper()
	dir := t.TempDir() // before the cleanup below, which must run first
	ctx, cancel := context.WithCancel(context.Background())
	out, w := io.Pipe()
	done := make(chan int, 1)
	var stderr strings.Builder
	go func() {
		defer w.Close()
		done <- run(ctx, []string{"demo", "--http-addr", "127.0.0.1:0", "--embedded-port", "0", "--shop-addr", "127.0.0.1:0",
			"--data-dir", dir, "--partitions", "2", "--log-level", "warn", "--analytics-js", ajs},
			w, &stderr, func(string) string { return "" })
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("tailor demo exited %d: %s", code, stderr.String())
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	go io.Copy(io.Discard, out)
	m := regexp.MustCompile(`^demo shop: (http://\S+) `).FindStringSubmatch(line)
	if err != nil || m == nil {
		t.Fatalf("tailor demo printed %q (%v); stderr: %s", line, err, stderr.String())
	}
	return m[1]
}

// walkDemo goes through the shop in tab and checks the banner at each
// step.
func walkDemo(t *testing.T, tab context.Context, shop string) {
	log := testbrowser.Watch(tab)
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(tab, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v\nthe page's console:\n%s", what, err, log)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(tab, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v\nthe page's console:\n%s", expr, err, log)
		}
		return v
	}
	// visit loads a page and waits for its events to be sent and its
	// placements decided.
	visit := func(path string) {
		t.Helper()
		do("open "+path, chromedp.Navigate(shop+path))
		eval(`Promise.all([shop.started, tailor.ready]).then(() => "")`)
	}
	// banner waits until the home page's banner shows offer, loading the
	// page again while the engine has not applied the visitor's events.
	banner := func(offer string) {
		t.Helper()
		var got string
		for deadline := time.Now().Add(20 * time.Second); ; {
			visit("/")
			if got = eval(`document.getElementById("hero").getAttribute("data-tailor-offer") || ""`); got == offer {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the home page's banner shows %q, want %q\nthe page's console:\n%s", got, offer, log)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	banner("welcome")
	if text := eval(`document.getElementById("hero").textContent`); !strings.Contains(text, "Welcome to the shop") {
		t.Errorf("banner %q", text)
	}
	visit("/p/runner-2")
	banner("shoes-new-season")
	visit("/p/day-pack")
	do("add to cart", chromedp.Click(chromedp.ID("add")), chromedp.WaitVisible(chromedp.ID("checkout")))
	banner("cart-reminder")
	if path := os.Getenv(envScreenshot); path != "" {
		screenshot(t, tab, shop, path)
	}
	visit("/cart")
	do("check out", chromedp.Click(chromedp.ID("checkout")), chromedp.WaitVisible(chromedp.ID("order")))
	do("place the order", chromedp.Click(chromedp.ID("order")), chromedp.WaitVisible(chromedp.ID("thanks")))
	// No reminder now; and the bags bought outweigh the shoes once
	// viewed, so the visitor is no longer into shoes.
	banner("welcome")
	if ex := log.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught exceptions in the shop's pages: %q", ex)
	}
}

// screenshot writes a PNG of the home page, once its panel shows the
// visitor's segments, to path.
func screenshot(t *testing.T, tab context.Context, shop, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(shop+"/"),
		chromedp.Poll[chromedp.Void](`document.getElementById("segments").textContent.includes("cart_abandoner")`)); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}
