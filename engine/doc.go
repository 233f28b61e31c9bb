// Package engine assembles a running tailor from its configuration: the
// embedded broker when no brokers are configured, the topics, the producer
// behind the collect API, the processor that applies events to the
// partition stores, and the HTTP server. cmd/tailor and the end-to-end
// tests start tailor through it.
package engine
