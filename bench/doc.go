// Package bench measures a tailor deployment: how fast it applies events
// compared with a consumer that does nothing on the same topic in the same
// run. Every figure it reports comes with its baseline, because absolute
// rates say little on shared machines.
package bench
