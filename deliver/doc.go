// Package deliver owns destinations: a delivery consumer per destination
// that reads the segments topic (read_committed, consumer group
// "<group>-deliver.<destination>") and delivers each entered and exited
// change of the destination's segments to its webhook, with the profile
// fields it asks for when the profile grants its consent purpose.
//
// Guarantees (docs/destinations.md, decision 0032): at least once (a
// partition's offsets are committed only once every change read was
// answered 2xx, withheld, or dead-lettered), a destination that is down
// holding back no other; an idempotency key per change, its segments
// topic/partition/offset ("tailor.segments/3/1289"), sent as the
// Idempotency-Key header and as "id" in the body; in order per profile
// key (a key's changes go one after the other, different keys in
// parallel); retries with exponential backoff and jitter, honouring
// Retry-After; a circuit breaker per destination; a signature
// X-Tailor-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." +
// body)> (Sign, Verify); past a destination's max_attempts or max_age a
// change goes to the dead-letter topic "<prefix>deliver-deadletter" with
// the destination and the reason in headers, and Replay sends those of one
// destination again.
package deliver
