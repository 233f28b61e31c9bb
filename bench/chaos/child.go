package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/tailorcdp/tailor/state"
)

// Child is a "tailor run" process.
type Child struct {
	cmd    *exec.Cmd
	url    string
	logs   *tailBuffer
	exited chan struct{} // closed once the process has ended
	client *http.Client
}

// FreeAddr returns a 127.0.0.1 address with a port free at the time of
// the call.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Start runs "bin run" with args, its HTTP API on a free port. When logFile is not empty the child's
// standard output and error go to it as well.
func Start(bin, logFile string, args ...string) (*Child, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	c := &Child{url: "http://" + addr, logs: &tailBuffer{max: 256 << 10}, exited: make(chan struct{}),
		client: &http.Client{Timeout: 10 * time.Second}}
	c.cmd = exec.Command(bin, append([]string{"run", "--http-addr", addr}, args...)...)
	var out io.Writer = c.logs
	var f *os.File
	if logFile != "" {
		if f, err = os.Create(logFile); err != nil {
			return nil, err
		}
		out = io.MultiWriter(c.logs, f)
	}
	c.cmd.Stdout, c.cmd.Stderr = out, out
	if err := c.cmd.Start(); err != nil {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("start %s run: %w", bin, err)
	}
	go func() {
		c.cmd.Wait()
		if f != nil {
			f.Close()
		}
		close(c.exited)
	}()
	return c, nil
}

// URL returns the base URL of the child's HTTP API.
func (c *Child) URL() string { return c.url }

// Logs returns the last of what the child wrote to its standard output
// and error.
func (c *Child) Logs() string { return c.logs.String() }

// Kill ends the child with SIGKILL and waits for it to be gone.
func (c *Child) Kill() { c.signal(syscall.SIGKILL) }

// Stop asks the child to shut down (SIGTERM) and waits for it.
func (c *Child) Stop() { c.signal(syscall.SIGTERM) }

func (c *Child) signal(sig syscall.Signal) {
	select {
	case <-c.exited:
		return
	default:
	}
	c.cmd.Process.Signal(sig)
	<-c.exited
}

// Get asks the child for path, with key as the basic auth user when not
// empty, and returns the status and body.
func (c *Child) Get(ctx context.Context, path, key string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.url+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if key != "" {
		req.SetBasicAuth(key, "")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// WaitReady waits until the child's /readyz answers 200: every partition
// assigned has applied what it held at assignment. It returns at once
// with an error when the child has exited.
func (c *Child) WaitReady(ctx context.Context) error {
	for {
		if status, _, err := c.Get(ctx, "/readyz", ""); err == nil && status == http.StatusOK {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("tailor exited (%v) before it was ready", c.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("tailor not ready: %w", ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Profile returns the profile of key, read with readKey; false when there
// is none. A partition on the move (503) is asked again until ctx ends.
func (c *Child) Profile(ctx context.Context, key, readKey string) (state.View, bool, error) {
	for {
		status, body, err := c.Get(ctx, "/v1/profiles/"+key, readKey)
		switch {
		case err != nil:
			return state.View{}, false, fmt.Errorf("GET profile %s: %w", key, err)
		case status == http.StatusNotFound:
			return state.View{}, false, nil
		case status == http.StatusOK:
			var v state.View
			if err := json.Unmarshal(body, &v); err != nil {
				return v, false, fmt.Errorf("profile %s: %w", key, err)
			}
			return v, true, nil
		case status != http.StatusServiceUnavailable:
			return state.View{}, false, fmt.Errorf("GET profile %s: %d %s", key, status, body)
		}
		select {
		case <-ctx.Done():
			return state.View{}, false, fmt.Errorf("GET profile %s: still 503 %s: %w", key, body, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tailBuffer keeps the last max bytes written to it, for a child's logs.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
