package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Backoff is how long retries wait: Base doubled per attempt, at most
// Max, a random part of it (jitter) removed; a receiver's Retry-After
// when longer.
type Backoff struct {
	Base, Max time.Duration
}

// DefaultBackoff starts at 250 ms and stops growing at a minute.
var DefaultBackoff = Backoff{Base: 250 * time.Millisecond, Max: time.Minute}

// wait returns the wait before attempt n+1 after n failed attempts.
func (b Backoff) wait(n int, retryAfter time.Duration) time.Duration {
	d := b.Base << min(n-1, 30)
	if d > b.Max || d <= 0 {
		d = b.Max
	}
	d = d/2 + rand.N(d/2+1) // between half and all of it
	return max(d, retryAfter)
}

// outcome is how the delivery of some changes ended.
type outcome struct {
	delivered bool
	reason    string // why it was given up: dead-lettered with it
	attempts  int
}

// attemptError is a failed attempt: the receiver's status (0: none),
// its Retry-After, and whether trying again can help.
type attemptError struct {
	status     int
	retryAfter time.Duration
	permanent  bool
	err        error
}

func (e *attemptError) Error() string {
	if e.status != 0 {
		return fmt.Sprintf("receiver answered %d", e.status)
	}
	return e.err.Error()
}

// sender posts deliveries.
type sender struct {
	client  *http.Client
	backoff Backoff
	now     func() time.Time
}

// deliver sends changes to x until the receiver answers 2xx, the
// changes are past the destination's bounds (max_attempts failed attempts
// here, or max_age since the oldest was written; the outcome's reason says
// why), the destination is removed, or ctx ends (an error).
func (s *sender) deliver(ctx context.Context, x *dest, changes []Change) (outcome, error) {
	first := born(changes, s.now())
	var last string
	for n := 1; ; n++ {
		if x.removed.Load() {
			return outcome{reason: "destination removed", attempts: n - 1}, nil
		}
		d := x.cfg.Load()
		err := s.attempt(ctx, x, d, changes)
		if err == nil {
			return outcome{delivered: true, attempts: n}, nil
		}
		if ctx.Err() != nil {
			return outcome{}, ctx.Err()
		}
		var ae *attemptError
		if !errors.As(err, &ae) {
			return outcome{}, err
		}
		if ae.err != nil && (errors.Is(ae.err, gobreaker.ErrOpenState) || errors.Is(ae.err, gobreaker.ErrTooManyRequests)) {
			// The circuit is open: no request was made; wait and ask again.
			n--
			if err := sleep(ctx, s.backoff.wait(1, 0)); err != nil {
				return outcome{}, err
			}
			if s.now().Sub(first) >= d.MaxAge {
				return outcome{reason: "max_age " + d.MaxAge.String() + " passed: " + orCircuit(last), attempts: n}, nil
			}
			continue
		}
		last = ae.Error()
		x.failed.Add(1)
		switch {
		case ae.permanent:
			return outcome{reason: last + " (not retried)", attempts: n}, nil
		case n >= d.MaxAttempts:
			return outcome{reason: fmt.Sprintf("%d attempts (max_attempts), the last: %s", n, last), attempts: n}, nil
		}
		wait := s.backoff.wait(n, ae.retryAfter)
		if s.now().Add(wait).Sub(first) >= d.MaxAge {
			return outcome{reason: fmt.Sprintf("max_age %s passed after %d attempts, the last: %s", d.MaxAge, n, last), attempts: n}, nil
		}
		x.retried.Add(1)
		if err := sleep(ctx, wait); err != nil {
			return outcome{}, err
		}
	}
}

// born returns when the oldest of changes was written (its age counts
// against max_age, across restarts), or now for changes without a time
// (replayed ones).
func born(changes []Change, now time.Time) time.Time {
	t := now
	for _, c := range changes {
		if !c.written.IsZero() && c.written.Before(t) {
			t = c.written
		}
	}
	return t
}

func orCircuit(last string) string {
	if last == "" {
		return "the circuit was open"
	}
	return last
}

// attempt makes one request through the destination's rate limit,
// concurrency bound and circuit breaker.
func (s *sender) attempt(ctx context.Context, x *dest, d *Destination, changes []Change) error {
	raw, err := body(changes, d.BatchSize)
	if err != nil {
		return fmt.Errorf("encode the changes for %s: %w", d.Name, err)
	}
	if err := x.limiter.Wait(ctx); err != nil {
		return err
	}
	select {
	case x.inflight <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-x.inflight }()
	_, err = x.breaker.Execute(func() (struct{}, error) { return struct{}{}, s.post(ctx, d, raw, changes) })
	var ae *attemptError
	if err != nil && !errors.As(err, &ae) && ctx.Err() == nil {
		err = &attemptError{err: err}
	}
	return err
}

// post sends one request.
func (s *sender) post(ctx context.Context, d *Destination, raw []byte, changes []Change) error {
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(raw))
	if err != nil {
		return &attemptError{err: fmt.Errorf("request to %s: %w", d.Name, err), permanent: true}
	}
	for k, v := range d.Headers {
		req.Header.Set(k, v)
	}
	ids := make([]string, len(changes))
	for i, c := range changes {
		ids[i] = c.ID
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tailor-deliver")
	req.Header.Set(IdempotencyHeader, strings.Join(ids, ","))
	req.Header.Set(SignatureHeader, Sign(d.Secret, s.now(), raw))
	resp, err := s.client.Do(req)
	if err != nil {
		return &attemptError{err: fmt.Errorf("post to %s: %w", d.Name, err)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &attemptError{status: resp.StatusCode, retryAfter: retryAfter(resp.Header.Get("Retry-After"), s.now()),
		permanent: resp.StatusCode >= 400 && resp.StatusCode < 500 && !retryable4xx(resp.StatusCode)}
}

// retryable4xx are the 4xx answers that another try may change.
func retryable4xx(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return false
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now))
	}
	return 0
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
