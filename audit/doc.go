// Package audit owns the record of admin actions: what was done (a
// configuration reload, an erasure, an export), when, by which key (by
// its label, never the secret) and with what detail, as a JSON record on
// the compacted audit topic, keyed by the action's id (decision 0030).
//
// It imports nothing of tailor's, so that serve (the HTTP admin actions),
// stream (an erasure applied inside a partition's Kafka transaction) and
// engine (configuration reloads) all write the same records.
package audit
