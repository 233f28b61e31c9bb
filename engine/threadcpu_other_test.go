//go:build !linux

package engine_test

import "time"

// threadCPU reports that the thread's CPU time is not known here.
func threadCPU() (time.Duration, bool) { return 0, false }
