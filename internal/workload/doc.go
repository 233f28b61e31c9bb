// Package workload generates synthetic, reproducible e-commerce traffic as
// Segment events, session by session: known customers with Zipf-distributed
// activity and anonymous visitors (some of whom identify during their
// visit), page views, product views over a catalogue with categories and
// Zipf-distributed popularity, add-to-carts, checkouts and orders at
// configurable funnel rates, and identify calls with traits.
package workload
