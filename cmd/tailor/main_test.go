package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/internal/testkafka"
)

func runArgs(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb, func(string) string { return "" })
	return code, out.String(), errb.String()
}

func TestHelpDocumentsEveryOption(t *testing.T) {
	code, out, _ := runArgs(t, "--help")
	if code != 0 {
		// --help on the default command prints usage to stderr.
		t.Fatalf("exit %d", code)
	}
	_, out2, errOut := runArgs(t, "help")
	help := out + out2 + errOut
	for _, name := range config.FlagNames() {
		if !strings.Contains(help, "--"+name) {
			t.Errorf("help does not mention --%s", name)
		}
	}
	for _, cmd := range []string{"run", "demo", "broker", "import", "export", "check-config", "bench", "version"} {
		if !strings.Contains(help, "  "+cmd+" ") {
			t.Errorf("help does not list the %s command", cmd)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	if code, _, stderr := runArgs(t, "frobnicate"); code != 2 || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runArgs(t, "run", "--partitions", "x"); code != 2 || !strings.Contains(stderr, "not an integer") {
		t.Errorf("bad flag: exit %d, stderr %q", code, stderr)
	}
}

// TestImport imports a file with good and bad lines: the good ones reach
// the events topic, the bad ones are counted with their reasons, and the
// exit status says some were rejected.
func TestImport(t *testing.T) {
	brokers := testkafka.Brokers(t)
	prefix := testkafka.Prefix(t)
	file := filepath.Join(t.TempDir(), "events.ndjson")
	os.WriteFile(file, []byte(strings.Join([]string{
		`{"type": "track", "userId": "u1", "event": "A"}`,
		`{"type": "track", "userId": "u2", "event": "B", "messageId": "fixed"}`,
		``,
		`{"type": "track", "event": "no id"}`,
		`not json`,
		`{"type": "track", "userId": "u3", "event": "C", "context": {"library": {"name": "analytics-python"}}}`,
	}, "\n")), 0o644)
	code, _, stderr := runArgs(t, "import", "--brokers", strings.Join(brokers, ","), "--topic-prefix", prefix, "--partitions", "2", file)
	if code != 1 {
		t.Errorf("exit %d, want 1 for rejected lines; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"6 lines: 3 accepted, 2 rejected", "userId or anonymousId is required (first at line 4)", "malformed JSON", "(first at line 5)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("summary lacks %q:\n%s", want, stderr)
		}
	}
	recs := testkafka.Consume(t, brokers, prefix+"events", 3, 10*time.Second)
	if len(recs) != 3 {
		t.Fatalf("%d records in the topic, want 3", len(recs))
	}
	for _, r := range recs {
		if !bytes.Contains(r.Value, []byte(`"receivedAt"`)) || !bytes.Contains(r.Value, []byte(`"messageId"`)) {
			t.Errorf("record not stamped: %s", r.Value)
		}
		if string(r.Key) == "u2" && !bytes.Contains(r.Value, []byte(`"messageId":"fixed"`)) {
			t.Errorf("the event's own messageId was replaced: %s", r.Value)
		}
		// Marked as imported (decision 0026), unless it names its SDK.
		library := `"library":{"name":"tailor-import"}`
		if string(r.Key) == "u3" {
			library = `"library":{"name":"analytics-python"}`
		}
		if !bytes.Contains(r.Value, []byte(library)) {
			t.Errorf("record of %s lacks %s: %s", r.Key, library, r.Value)
		}
	}
}
