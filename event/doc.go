// Package event owns tailor's event model: the Segment tracking spec
// (identify, track, page, screen, group, alias) as it arrives over HTTP or
// straight on Kafka, its validation, and the facts the engine reads from it
// (profile key, event time, e-commerce order amounts).
//
// It is the one small package of domain types that the collect API, the
// consumer and the import command share, so that an event accepted at one
// door is accepted at every other door, and rejected with the same words.
package event
