package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/internal/testkafka"
)

// lockedBuffer is a child's stderr, read while it writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSIGTERMDataDirRemoved is the report of issue 25 as it was seen:
// SIGTERM to an engine whose data directory was removed under it. The
// process must exit within its shutdown.timeout, with status 1 and a log
// line naming what did not finish, instead of hanging in the group's leave
// call while Badger retries its memtable flush every second.
func TestSIGTERMDataDirRemoved(t *testing.T) {
	brokers, prefix := testkafka.Brokers(t), testkafka.Prefix(t)
	bin := buildTailor(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "run", "--brokers", strings.Join(brokers, ","), "--topic-prefix", prefix,
		"--group", prefix+"engine", "--partitions", "2", "--data-dir", dir, "--http-addr", addr,
		"--write-keys", "w", "--read-keys", "r", "--shutdown-timeout", "3s", "--log-format", "text")
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	url := "http://" + addr
	call := func(method, path, key, body string) int {
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		req.SetBasicAuth(key, "")
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitUntil := func(what string, cond func() bool) {
		for deadline := time.Now().Add(90 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
			}
		}
	}
	waitUntil("the engine to be ready", func() bool { return call("GET", "/readyz", "", "") == http.StatusOK })
	for i := range 50 {
		call("POST", "/v1/track", "w", fmt.Sprintf(`{"type": "track", "userId": "u%d", "event": "Viewed"}`, i))
	}
	waitUntil("the events to be applied", func() bool { return call("GET", "/v1/profiles/u49", "r", "") == http.StatusOK })
	for i := range 50 {
		call("POST", "/v1/track", "w", fmt.Sprintf(`{"type": "track", "userId": "v%d", "event": "Viewed"}`, i))
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-exited:
	case <-time.After(2 * time.Minute): // far past the 3 s bound: hung
		t.Fatalf("the process did not exit 2 minutes after SIGTERM, with shutdown.timeout 3s; logs:\n%s", logs.String())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", err)
	}
	for _, want := range []string{"shutdown did not finish in time", "still_stopping=", "partition stores"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, logs.String())
		}
	}
}
