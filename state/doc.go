// Package state owns what tailor knows about each customer and how it is
// kept: the Profile, how an event changes it, its versioned binary encoding,
// and the Badger store of one partition, which writes a poll's profiles
// together with the last applied offset in one transaction.
//
// Two parts, kept apart by file (decision 0024). The profile model:
// profile.go, encoding.go and decoding.go, encoding_legacy.go,
// messagelog.go, aggregate.go, window.go, packed.go, segment.go,
// rfmsegments.go, rfm.go, interest.go, consent.go, offers.go, products.go,
// merge.go, traits.go.
// The store: options.go, store.go, batch.go, commit.go, backfill.go,
// schedule.go, retention.go, changelog.go, tables.go, links.go, productstore.go,
// totals.go. The model's files use nothing unexported of the store's.
package state
