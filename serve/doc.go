// Package serve owns tailor's HTTP side, on fasthttp: the collect API
// (Segment's tracking API: /v1/batch, /v1/track, ..., with the paths and
// CORS that analytics.js and RudderStack's SDKs use in browsers), the
// decide and profile APIs, the access export (export.go), health and
// readiness probes, Prometheus metrics, and /v1/tailor.js (the script of
// package web). Every error answer is JSON saying what is wrong
// (ErrorBody), and the memory that request bodies hold is bounded
// (body.go).
package serve
