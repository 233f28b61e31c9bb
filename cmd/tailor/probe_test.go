package main

import (
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestProbe asks a real HTTP server on loopback, listening on every
// interface, as the container health check does.
func TestProbe(t *testing.T) {
	var ready atomic.Bool
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz":
			w.Write([]byte(`{"status":"ok"}`))
		case r.URL.Path == "/readyz" && ready.Load():
			w.Write([]byte(`{"status":"ready"}`))
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"status":"shutting down"}`))
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String() // [::]:port
	for _, tc := range []struct {
		name  string
		ready bool
		args  []string
		code  int
		want  string
	}{
		{"ready", true, nil, 0, `"ready"`},
		{"not ready", false, nil, 1, "503"},
		{"live while not ready", false, []string{"--live"}, 0, `"ok"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready.Store(tc.ready)
			code, stdout, stderr := runArgs(t, append([]string{"probe", "--http-addr", addr}, tc.args...)...)
			if code != tc.code || !strings.Contains(stdout+stderr, tc.want) {
				t.Errorf("exit %d, want %d; stdout %q stderr %q", code, tc.code, stdout, stderr)
			}
		})
	}
	ln.Close()
	srv.Close()
	if code, _, stderr := runArgs(t, "probe", "--http-addr", addr); code != 1 || !strings.Contains(stderr, "connect") {
		t.Errorf("nothing listening: exit %d, stderr %q", code, stderr)
	}
}
