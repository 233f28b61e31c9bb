// Package web owns what tailor serves to web browsers as files: tailor.js,
// the script a page includes to show decide's offers in its placements
// (tailor.js, embedded, served minified and gzipped by serve at
// /v1/tailor.js), and the demo shop (`tailor demo`): a few shop pages
// that load analytics.js and tailor.js against a running engine.
//
// It imports nothing of tailor's: serve serves the script, cmd/tailor
// runs the shop beside an engine.
package web
