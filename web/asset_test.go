package web

import (
	"bytes"
	"strings"
	"testing"
)

// TestTailorJSSize holds tailor.js to its size goal: under 5 KB gzipped,
// as served (minified). BENCHMARKS.md records the sizes.
func TestTailorJSSize(t *testing.T) {
	a, err := TailorJS()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tailor.js: %d bytes as written, %d minified, %d gzipped", len(tailorJSSource), len(a.Body), len(a.Gzip))
	if len(a.Gzip) >= 5<<10 {
		t.Errorf("tailor.js is %d bytes gzipped: the goal is under 5 KB", len(a.Gzip))
	}
	// Minifying keeps the licence comment and what pages rely on.
	for _, want := range []string{"/*! tailor.js", "data-tailor-placement", "Offer Viewed", "Offer Clicked", "ajs_anonymous_id", "/v1/decide?"} {
		if !bytes.Contains(a.Body, []byte(want)) {
			t.Errorf("minified tailor.js lacks %q", want)
		}
	}
}

func TestAssetMatches(t *testing.T) {
	a, err := NewAsset("x.js", "application/javascript", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{a.ETag, true},
		{a.GzipETag, true},
		{"W/" + a.ETag, true},
		{`"a", ` + a.GzipETag, true},
		{"*", true},
		{`"a"`, false},
		{"", false},
		{strings.Trim(a.ETag, `"`), false}, // unquoted
	} {
		if got := a.Matches(tc.header); got != tc.want {
			t.Errorf("Matches(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}
