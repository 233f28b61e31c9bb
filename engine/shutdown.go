package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tailorcdp/tailor/config"
)

// A shutdown has two phases (docs/operations.md#shutdown): for
// shutdown.drain /readyz answers 503 while everything else still serves;
// then the HTTP server, the consumer (leaving the group, which closes the
// partition stores) and the producer stop, within shutdown.timeout. A
// part that does not stop in time (seen: stores whose directory was
// removed retry their memtable flush for ever, under the leave-group's
// revoke callback) is left behind: Run returns ErrShutdownIncomplete
// naming it, and the process exits non-zero.

// ErrShutdownIncomplete is wrapped when a shutdown's bound passed before
// every part stopped.
var ErrShutdownIncomplete = errors.New("shutdown did not finish")

// closer runs an engine's close once, in the background, and says which
// part it is stopping.
type closer struct {
	once sync.Once
	done chan struct{}
	step atomic.Pointer[string]
}

// at records the part being stopped.
func (c *closer) at(step string) { c.step.Store(&step) }

// drain makes /readyz answer 503 and waits shutdown.drain, while the
// consumer and the HTTP server go on; a part that fails meanwhile ends it
// with its error.
func (e *Engine) drain(procDone, httpDone chan error) error {
	e.server.Drain()
	d := e.shutdown.Drain
	e.log.Info("shutting down: /readyz answers 503", "drain", d.String(), "timeout", e.shutdown.Timeout.String())
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case err := <-procDone:
		procDone <- err // for the wait after the drain
		return err
	case err := <-httpDone:
		return fmt.Errorf("http server: %w", err)
	}
}

// bounds returns the engine's shutdown bounds; a zero timeout (a
// configuration not validated) counts as the default.
func bounds(s config.Shutdown) shutdownBounds {
	b := shutdownBounds{Drain: time.Duration(s.Drain), Timeout: time.Duration(s.Timeout)}
	if b.Timeout <= 0 {
		b.Timeout = time.Duration(config.Default().Shutdown.Timeout)
	}
	return b
}

// shutdownBounds are the durations of a shutdown's two phases.
type shutdownBounds struct{ Drain, Timeout time.Duration }

// incomplete returns the error, and logs the line, of a shutdown that
// gave up on step.
func (e *Engine) incomplete(step string) error {
	e.log.Error("shutdown did not finish in time; exiting without it", "timeout", e.shutdown.Timeout.String(), "still_stopping", step)
	return fmt.Errorf("%w within shutdown.timeout %s: still stopping %s", ErrShutdownIncomplete, e.shutdown.Timeout, step)
}

// closeWithin stops every part that was started, giving up at deadline:
// the error then wraps ErrShutdownIncomplete and names the part still
// stopping, which is logged too.
func (e *Engine) closeWithin(deadline time.Time) error {
	e.closer.once.Do(func() {
		e.closer.done = make(chan struct{})
		go func() {
			defer close(e.closer.done)
			e.closeParts()
		}()
	})
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-e.closer.done:
		return nil
	case <-t.C:
	}
	step := "?"
	if p := e.closer.step.Load(); p != nil {
		step = *p
	}
	return e.incomplete(step)
}

// closeParts stops the parts in order; it runs once.
func (e *Engine) closeParts() {
	if e.server != nil {
		e.closer.at("the HTTP server")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = e.server.Shutdown(ctx)
		cancel()
	}
	if e.ln != nil {
		e.ln.Close() // when Serve never ran, Shutdown has not closed it
	}
	if e.deliverer != nil {
		e.closer.at("the destinations' delivery")
		e.deliverer.Close()
	}
	if e.processor != nil {
		e.closer.at("the consumer (leaving the group, closing the partition stores)")
		e.processor.Close()
	}
	if e.producer != nil {
		e.closer.at("the producer")
		e.producer.Close()
	}
	if e.embedded != nil {
		e.closer.at("the embedded broker")
		e.embedded.Close()
	}
}
