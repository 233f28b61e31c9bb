package testbrowser

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/tailorcdp/tailor/internal/testenv"
)

// Path returns the Chromium to run (TAILOR_CHROMIUM, else chromium or
// chromium-browser on the PATH), or ends tb through testenv.Missing.
func Path(tb testing.TB) string {
	tb.Helper()
	for _, name := range []string{os.Getenv("TAILOR_CHROMIUM"), "chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	testenv.Missing(tb, "no Chromium: install Debian's chromium package (.ci/run does) or set TAILOR_CHROMIUM")
	return ""
}

// New starts a headless Chromium of its own for tb (--headless
// --no-sandbox --disable-gpu --disable-dev-shm-usage, a fresh profile, a
// 1280x900 window) and returns the context of its first tab, for
// chromedp.Do and chromedp.Run. The browser closes when tb ends.
func New(tb testing.TB) context.Context {
	tb.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Path(tb)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	tb.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no deadline
		tb.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// Tab opens a new tab in ctx's browser, closed when tb ends.
func Tab(tb testing.TB, ctx context.Context) context.Context {
	tb.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	tb.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		tb.Fatalf("open a tab: %v", err)
	}
	return tab
}

// Log keeps what a tab wrote to its console, uncaught exceptions and
// unhandled rejections included.
type Log struct {
	mu         sync.Mutex
	messages   []string
	exceptions []string
}

// Watch starts keeping ctx's tab's console messages, until ctx ends.
func Watch(ctx context.Context) *Log {
	l := &Log{}
	messages := chromedp.Console(ctx) // subscribes now
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			l.mu.Lock()
			l.messages = append(l.messages, m.String())
			if m.IsException() {
				l.exceptions = append(l.exceptions, m.String())
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// Exceptions returns the uncaught exceptions and unhandled rejections
// seen so far.
func (l *Log) Exceptions() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.exceptions...)
}

// String returns every message seen so far, one a line.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.messages, "\n")
}
