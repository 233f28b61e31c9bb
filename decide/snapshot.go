package decide

import (
	"sync"
	"sync/atomic"
)

// snapshot caches a value computed from all partitions (offer statistics,
// trending products) for a while: decide calls read it, and one of them
// at a time rebuilds it once it is older than the decider's StatsMaxAge.
type snapshot[T any] struct {
	cur atomic.Pointer[stamped[T]]
	mu  sync.Mutex // one rebuild at a time
}

type stamped[T any] struct {
	v  T
	at int64 // Unix ms
}

// get returns the cached value if it was built less than maxAge ms before
// now, else builds, caches and returns a new one.
func (s *snapshot[T]) get(now, maxAge int64, build func() T) T {
	if c := s.cur.Load(); c != nil && now-c.at < maxAge {
		return c.v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.cur.Load(); c != nil && now-c.at < maxAge {
		return c.v
	}
	c := &stamped[T]{v: build(), at: now}
	s.cur.Store(c)
	return c.v
}
