// Package decide owns tailor's decisions: which offers win each placement
// of a page for one visitor, and which products to recommend. It compiles
// the offers and placements of a configuration, arbitrates between the
// eligible offers (by priority, by score, or learning with Thompson
// sampling, with a control group held out), enforces frequency caps and
// cooldowns from the profile, and reports the offers' statistics.
//
// It reads profiles and statistics through small interfaces (Source), so
// it does not know where they are kept; serve wires it to HTTP.
package decide
