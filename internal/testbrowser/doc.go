// Package testbrowser starts a headless Chromium for tests and
// benchmarks and drives it with chromedp: the system's Chromium (Debian's
// chromium package, which .ci/run installs, or TAILOR_CHROMIUM), or, when
// there is none, the test skips through testenv.Missing (and fails in CI).
package testbrowser
