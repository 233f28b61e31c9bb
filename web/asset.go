package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/tdewolff/minify/v2"
	"github.com/tdewolff/minify/v2/js"
)

// tailorJSSource is tailor.js as written; TailorJS serves it minified.
//
//go:embed tailor.js
var tailorJSSource []byte

// Asset is a file prepared for serving: its body, the body gzipped, and
// an entity tag for each.
type Asset struct {
	Name        string
	ContentType string
	Body        []byte
	Gzip        []byte
	// ETag and GzipETag are strong, quoted entity tags of Body and Gzip.
	ETag, GzipETag string
}

// NewAsset prepares body for serving under name.
func NewAsset(name, contentType string, body []byte) (*Asset, error) {
	var z bytes.Buffer
	w, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("gzip %s: %w", name, err)
	}
	if _, err := w.Write(body); err != nil {
		return nil, fmt.Errorf("gzip %s: %w", name, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("gzip %s: %w", name, err)
	}
	sum := sha256.Sum256(body)
	tag := hex.EncodeToString(sum[:12])
	return &Asset{Name: name, ContentType: contentType, Body: body, Gzip: z.Bytes(),
		ETag: `"` + tag + `"`, GzipETag: `"` + tag + `-gz"`}, nil
}

// Matches says whether an If-None-Match header value names one of the
// asset's entity tags (weakly compared, as RFC 9110 has it for
// If-None-Match), or is "*".
func (a *Asset) Matches(ifNoneMatch string) bool {
	for tag := range strings.SplitSeq(ifNoneMatch, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == a.ETag || tag == a.GzipETag {
			return true
		}
	}
	return false
}

// TailorJSContentType is the Content-Type tailor.js is served with.
const TailorJSContentType = "application/javascript; charset=utf-8"

// TailorJS returns tailor.js, minified, ready to serve.
func TailorJS() (*Asset, error) {
	m := minify.New()
	m.AddFunc("application/javascript", js.Minify)
	body, err := m.Bytes("application/javascript", tailorJSSource)
	if err != nil {
		return nil, fmt.Errorf("minify web/tailor.js: %w", err)
	}
	return NewAsset("tailor.js", TailorJSContentType, body)
}

// TailorJSSource returns tailor.js as written, with its comments.
func TailorJSSource() []byte { return bytes.Clone(tailorJSSource) }
