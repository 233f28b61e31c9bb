package chaos

import (
	"bytes"
	"context"
	"io"
	"sync"
	"time"
)

// pacer hands out the lines of an import at a rate while the child is
// up, so that an import spans the kills of a run rather than ending
// before the first.
type pacer struct {
	data []byte
	ends []int // offset after each line

	mu      sync.Mutex
	rate    float64   // lines per second while the child is up
	credit  float64   // lines allowed by the child's earlier up times
	upSince time.Time // zero while the child is down
	opened  bool      // every line allowed
	most    int       // lines handed out so far, by the furthest reader
}

func newPacer(data []byte) *pacer {
	p := &pacer{data: data}
	for i, b := range data {
		if b == '\n' {
			p.ends = append(p.ends, i+1)
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		p.ends = append(p.ends, len(data))
	}
	return p
}

// up starts an up time of the child; down ends it.
func (p *pacer) up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.upSince.IsZero() {
		p.upSince = time.Now()
	}
}

func (p *pacer) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.upSince.IsZero() {
		p.credit += p.rate * time.Since(p.upSince).Seconds()
		p.upSince = time.Time{}
	}
}

// open allows every line from now on.
func (p *pacer) open() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.opened = true
}

// allowed returns how many lines may be out by now.
func (p *pacer) allowed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.opened {
		return len(p.ends)
	}
	n := p.credit
	if !p.upSince.IsZero() {
		n += p.rate * time.Since(p.upSince).Seconds()
	}
	return min(len(p.ends), int(n))
}

// sent returns how many lines have been handed out.
func (p *pacer) sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.most
}

// reader returns a reader of the lines from the first, each handed out
// once allowed; it ends with ctx's error when ctx ends first.
func (p *pacer) reader(ctx context.Context) io.Reader {
	return &pacedReader{ctx: ctx, p: p}
}

type pacedReader struct {
	ctx  context.Context
	p    *pacer
	line int // lines read
	off  int // bytes read
}

func (r *pacedReader) Read(b []byte) (int, error) {
	for {
		if r.line == len(r.p.ends) {
			return 0, io.EOF
		}
		if n := r.p.allowed(); n > r.line {
			end := r.p.ends[n-1]
			k := copy(b, r.p.data[r.off:end])
			r.off += k
			r.line += bytes.Count(r.p.data[r.off-k:r.off], []byte("\n"))
			if r.off == len(r.p.data) {
				r.line = len(r.p.ends)
			}
			r.p.mu.Lock()
			r.p.most = max(r.p.most, r.line)
			r.p.mu.Unlock()
			return k, nil
		}
		select {
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
