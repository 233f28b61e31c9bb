package serve

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/tailorcdp/tailor/event"
)

// Request bodies. fasthttp streams them (Server.StreamRequestBody): it
// reads the headers and at most the first 8 KiB of a body before calling
// the handler, which reads the rest through readBody. A body is read only
// after its bytes are reserved from a budget shared by all requests
// (Config.MaxBodyBytesInFlight), so that many concurrent large bodies wait
// for each other, or get 503 with Retry-After, instead of all being held
// in memory at once: the bodies read at any moment take at most the
// budget, plus the 8 KiB pre-read of each open connection.

// smallBody is the size up to which a body is read without a
// reservation: fasthttp has read it with the headers.
const smallBody = 8 << 10

// errBusy is returned when the body budget stays exhausted for the whole
// wait.
var errBusy = errors.New("too many large request bodies in flight")

// budget is a count of bytes that readers take and give back; acquire
// waits for enough to be free.
type budget struct {
	mu    sync.Mutex
	total int64
	free  int64
	freed chan struct{} // closed, and replaced, when bytes are given back
	inUse prometheus.Gauge
}

func newBudget(total int64, inUse prometheus.Gauge) *budget {
	return &budget{total: total, free: total, freed: make(chan struct{}), inUse: inUse}
}

// acquire takes n bytes (at most the total), waiting until ctx ends for
// them to be free, and returns how many it took.
func (b *budget) acquire(ctx context.Context, n int64) (int64, error) {
	n = min(n, b.total)
	for {
		b.mu.Lock()
		if n <= b.free {
			b.free -= n
			b.inUse.Set(float64(b.total - b.free))
			b.mu.Unlock()
			return n, nil
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: waited %d bytes of a %d byte budget: %w", errBusy, n, b.total, ctx.Err())
		}
	}
}

func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free += n
	b.inUse.Set(float64(b.total - b.free))
	close(b.freed)
	b.freed = make(chan struct{})
}

// readBody returns the request body, gunzipped when sent with
// Content-Encoding: gzip, and at most limit bytes (after gunzipping).
// release gives back the body's reservation: call it once the body (and
// anything pointing into it) is no longer used. Errors wrap
// event.ErrTooLarge (413), errBusy (503) or are the client's (400).
func (s *Server) readBody(ctx *fasthttp.RequestCtx, limit int) (body []byte, release func(), err error) {
	release = func() {}
	gzipped := false
	switch enc := string(bytes.ToLower(ctx.Request.Header.ContentEncoding())); enc {
	case "", "identity":
	case "gzip":
		gzipped = true
	default:
		return nil, release, fmt.Errorf("unsupported Content-Encoding %q: send gzip or no encoding", enc)
	}
	wire := limit
	if gzipped {
		wire = wireLimit(limit)
	}
	length := ctx.Request.Header.ContentLength() // -1: chunked
	if length > wire {
		return nil, release, fmt.Errorf("body is over %d bytes, the limit of this endpoint (Content-Length %d): %w", limit, length, event.ErrTooLarge)
	}
	need := int64(length)
	if length < 0 {
		need = int64(wire)
	}
	if gzipped {
		need += int64(limit)
	}
	if need > smallBody {
		wctx, cancel := context.WithTimeout(context.Background(), s.cfg.BodyWait)
		took, err := s.bodies.acquire(wctx, need)
		cancel()
		if err != nil {
			return nil, release, err
		}
		release = func() { s.bodies.release(took) }
	}
	var raw []byte
	if stream := ctx.RequestBodyStream(); stream != nil && (length < 0 || length > smallBody) {
		raw, err = readAtMost(make([]byte, 0, max(length, 0)+1), stream, wire)
		if err != nil {
			release()
			return nil, func() {}, fmt.Errorf("reading the body: %w", err)
		}
		// Later readers (the request sent on to another instance) see it.
		ctx.Request.SetBodyRaw(raw)
	} else {
		// Read with the headers (at most smallBody), or a request not read
		// from a connection.
		raw = ctx.PostBody()
	}
	if len(raw) > wire {
		release()
		return nil, func() {}, fmt.Errorf("body is over %d bytes, the limit of this endpoint: %w", limit, event.ErrTooLarge)
	}
	body = raw
	if gzipped {
		if body, err = gunzip(raw, limit); err != nil {
			release()
			return nil, func() {}, err
		}
	}
	if len(body) > limit {
		release()
		return nil, func() {}, fmt.Errorf("body is over %d bytes, the limit of this endpoint: %w", limit, event.ErrTooLarge)
	}
	if len(body) == 0 {
		release()
		return nil, func() {}, errors.New("body is empty: send a JSON object")
	}
	return body, release, nil
}

// wireLimit is the most bytes a gzipped body of at most limit bytes
// takes: gzip never grows a text by more than a few bytes per 16 KiB block.
func wireLimit(limit int) int { return limit + limit/64 + 1024 }

// readAtMost appends what r holds to buf, up to limit+1 bytes (one more
// than allowed tells "at the limit" from "over").
func readAtMost(buf []byte, r io.Reader, limit int) ([]byte, error) {
	lr := io.LimitReader(r, int64(limit)+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// gunzip unpacks body, reading one byte past limit to tell "at the limit"
// from "over" without unpacking a gzip bomb.
func gunzip(body []byte, limit int) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("body is not valid gzip: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("body is not valid gzip: %w", err)
	}
	return out, nil
}

// bodyError answers a readBody error.
func bodyError(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, event.ErrTooLarge):
		drainBody(ctx)
		writeErrorCode(ctx, fasthttp.StatusRequestEntityTooLarge, "too_large", "", err.Error())
	case errors.Is(err, errBusy):
		// Not drained: the point is to spend nothing on it. A client
		// still sending may see a reset rather than the 503, and retries
		// either way.
		ctx.SetConnectionClose()
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
		writeErrorCode(ctx, fasthttp.StatusServiceUnavailable, "busy", "", err.Error()+": retry later")
	default:
		writeError(ctx, fasthttp.StatusBadRequest, "", err.Error())
	}
}

// maxDrain bounds the body drainBody reads and throws away.
const maxDrain = 8 << 20

// drainBody reads and throws away the body of a request refused on its
// Content-Length as too large, then closes the connection after the
// answer. A client that is still sending
// when the connection closes gets a reset, not the answer, unless it sent
// Expect: 100-continue; reading the rest costs bandwidth, not memory. A
// body declared over maxDrain, or chunked, is not read: the connection
// just closes.
func drainBody(ctx *fasthttp.RequestCtx) {
	ctx.SetConnectionClose()
	if !ctx.Request.IsBodyStream() {
		return
	}
	if length := ctx.Request.Header.ContentLength(); length > 0 && length <= maxDrain {
		_, _ = io.Copy(io.Discard, io.LimitReader(ctx.RequestBodyStream(), int64(length)))
	}
}

// finishBody leaves the connection ready for the next request after a
// handler that did not read the body: a small one, already pre-read, is
// skipped; a larger one closes the connection rather than read it.
func finishBody(ctx *fasthttp.RequestCtx) {
	if !ctx.Request.IsBodyStream() {
		return
	}
	switch length := ctx.Request.Header.ContentLength(); {
	case length == 0:
	case length > 0 && length <= smallBody:
		_, _ = io.Copy(io.Discard, io.LimitReader(ctx.RequestBodyStream(), int64(length)))
	default:
		ctx.SetConnectionClose()
	}
}

// bodyWaitDefault is how long a request waits for the body budget by
// default before it is answered 503.
const bodyWaitDefault = time.Second
