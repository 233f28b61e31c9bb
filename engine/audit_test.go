package engine_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/audit"
	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/serve"
)

// auditSecret is the admin key of the audit tests, labelled auditLabel.
const (
	auditSecret = "s3cret-admin-key-0042"
	auditLabel  = "ops"
)

// auditDoc is a configuration document with the audit tests' keys (the
// admin key's secret in it, as a real document has) and segments.
func auditDoc(segments string) string {
	return "http:\n  write_keys: [" + writeKey + "]\n  read_keys: [" + readKey + "]\n  admin_keys: [{label: " + auditLabel + ", key: " + auditSecret + "}]\n" +
		"segments:\n" + segments
}

// auditConfig returns a test configuration whose admin key is labelled,
// running from a config file holding auditDoc(segments).
// The running configuration has the segment adult, as the document.
func auditConfig(t *testing.T, brokers []string) (*config.Config, string) {
	cfg := testConfig(t, brokers, testkafka.Prefix(t), t.TempDir())
	cfg.HTTP.AdminKeys = config.Keys{{Label: auditLabel, Secret: auditSecret}}
	cfg.Segments = map[string]string{"adult": "traits.age >= 18"}
	file := filepath.Join(t.TempDir(), "tailor.yaml")
	if err := os.WriteFile(file, []byte(auditDoc("  adult: 'traits.age >= 18'\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Source = file
	return cfg, file
}

// auditEntries reads the audit topic until n records have come (or the
// timeout passes), checks that no record shows a secret of the tests'
// keys anywhere (key, value, headers), and decodes them.
func auditEntries(t *testing.T, brokers []string, topic string, n int, timeout time.Duration) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	for _, r := range testkafka.Consume(t, brokers, topic, n, timeout) {
		scanned := [][]byte{r.Key, r.Value}
		for _, h := range r.Headers {
			scanned = append(scanned, []byte(h.Key), h.Value)
		}
		for _, b := range scanned {
			for _, secret := range []string{auditSecret, writeKey, readKey} {
				if bytes.Contains(b, []byte(secret)) {
					t.Errorf("audit record %s shows the secret %q: %q", r.Key, secret, b)
				}
			}
		}
		e, err := audit.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != e.ID {
			t.Errorf("audit record keyed %q, its id is %q", r.Key, e.ID)
		}
		out = append(out, e)
	}
	return out
}

func sha(doc string) string {
	sum := sha256.Sum256([]byte(doc))
	return hex.EncodeToString(sum[:])
}

// TestAuditReload: a reload through the admin API, a rejected document
// and a change of the config file are each a record on the compacted
// audit topic, naming the admin key by its label (the file's change by
// config-file) and the document by its SHA-256, with no secret anywhere
// in them.
func TestAuditReload(t *testing.T) {
	brokers := testkafka.Brokers(t)
	cfg, file := auditConfig(t, brokers)
	e := startEngine(t, cfg)
	put := func(doc string) response {
		return do(t, "PUT", e.url+"/v1/admin/config", auditSecret, []byte(doc), nil)
	}
	second := auditDoc("  adult: 'traits.age >= 21'\n  fr: 'traits.country == \"FR\"'\n")
	if resp := put(second); resp.Status != http.StatusOK {
		t.Fatalf("reload: %d %s", resp.Status, resp.Body)
	}
	bad := auditDoc("  adult: 'traits.age >='\n")
	if resp := put(bad); resp.Status != http.StatusBadRequest {
		t.Fatalf("bad reload: %d %s", resp.Status, resp.Body)
	}
	third := auditDoc("  adult: 'traits.age >= 21'\n")
	if err := os.WriteFile(file, []byte(third), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the config file to be reloaded", 20*time.Second, func() bool {
		var list struct{ Segments []serve.SegmentInfo }
		do(t, "GET", e.url+"/v1/segments", readKey, nil, nil).json(t, &list)
		return len(list.Segments) == 1
	})

	entries := auditEntries(t, brokers, e.Topics().Audit, 3, 30*time.Second)
	if len(entries) != 3 {
		t.Fatalf("%d audit records, want 3: %+v", len(entries), entries)
	}
	byAction := map[string]audit.Entry{}
	for _, en := range entries {
		if en.At.IsZero() || time.Since(en.At) > time.Minute || len(en.ID) != 32 {
			t.Errorf("audit entry %+v: want an id of 32 hex digits and the time of the action", en)
		}
		byAction[en.Action+" by "+en.By] = en
	}
	for _, want := range []struct {
		key, sha string
		detail   []string // in the detail's JSON
	}{
		{audit.ConfigReloaded + " by " + auditLabel, sha(second), []string{`"source":"PUT /v1/admin/config"`, `"added":["fr"]`, `"changed":["adult"]`, `"persisted":"` + file + `"`}},
		{audit.ConfigRejected + " by " + auditLabel, sha(bad), []string{`"problems":1`}},
		{audit.ConfigReloaded + " by " + audit.ByConfigFile, sha(third), []string{`"source":"` + file + `"`, `"removed":["fr"]`}},
	} {
		en, ok := byAction[want.key]
		if !ok {
			t.Errorf("no audit record %s among %+v", want.key, entries)
			continue
		}
		r, err := en.Record("x")
		if err != nil {
			t.Fatal(err)
		}
		if en.Detail["sha256"] != want.sha {
			t.Errorf("%s: sha256 %v, want the document's %s", want.key, en.Detail["sha256"], want.sha)
		}
		for _, s := range want.detail {
			if !strings.Contains(string(r.Value), s) {
				t.Errorf("%s: %s lacks %s", want.key, r.Value, s)
			}
		}
	}

	// The topic is compacted: each action's latest state is kept.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	configs, err := kadm.NewClient(cl).DescribeTopicConfigs(context.Background(), e.Topics().Audit)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := configs.On(e.Topics().Audit, nil)
	if err != nil {
		t.Fatal(err)
	}
	compacted := false
	for _, c := range policy.Configs {
		compacted = compacted || c.Key == "cleanup.policy" && c.Value != nil && *c.Value == "compact"
	}
	if !compacted {
		t.Errorf("topic %s is not compacted: %+v", e.Topics().Audit, policy.Configs)
	}
}

// TestAuditBrokerDown: while the broker (the embedded one) is away, a
// reload through the admin API is answered 503 and changes nothing (the
// running segments, the config file); once the broker is back the same
// document is reloaded, and the refused attempt's record says it failed.
func TestAuditBrokerDown(t *testing.T) {
	broker := startKfake(t)
	first := auditDoc("  adult: 'traits.age >= 18'\n")
	cfg, file := auditConfig(t, broker.Addrs())
	e := startEngine(t, cfg)
	segments := func() []serve.SegmentInfo {
		var list struct{ Segments []serve.SegmentInfo }
		do(t, "GET", e.url+"/v1/segments", readKey, nil, nil).json(t, &list)
		return list.Segments
	}
	next := auditDoc("  adult: 'traits.age >= 21'\n  fr: 'traits.country == \"FR\"'\n")

	broker.Kill(t)
	resp := do(t, "PUT", e.url+"/v1/admin/config", auditSecret, []byte(next), nil)
	var body serve.ErrorBody
	resp.json(t, &body)
	if resp.Status != http.StatusServiceUnavailable || body.Code != "unavailable" || !strings.Contains(body.Message, "audit record could not be written") ||
		!strings.Contains(body.Message, "the running configuration stays in force") {
		t.Errorf("reload while the broker is away: %d %s, want 503 saying the audit record could not be written", resp.Status, resp.Body)
	}
	if s := segments(); len(s) != 1 || s[0].Rule != "traits.age >= 18" {
		t.Errorf("segments after the refused reload: %+v, want the running adult >= 18 alone", s)
	}
	if got, _ := os.ReadFile(file); string(got) != first {
		t.Errorf("config file after the refused reload:\n%s\nwant it unchanged", got)
	}

	broker.Start(t)
	waitFor(t, "a reload after the broker's restart", 2*time.Minute, func() bool {
		return do(t, "PUT", e.url+"/v1/admin/config", auditSecret, []byte(next), nil).Status == http.StatusOK
	})
	if s := segments(); len(s) != 2 {
		t.Errorf("segments after the reload: %+v, want adult and fr", s)
	}
	// The refused attempt left no record, or (had its record been sent
	// before the broker went) an action.refused one of its id after it.
	entries := auditEntries(t, broker.Addrs(), e.Topics().Audit, 3, 5*time.Second)
	latest := map[string]audit.Entry{}
	var ids []string
	for _, en := range entries {
		if en.By != auditLabel || en.Action == audit.ConfigReloaded && en.Detail["sha256"] != sha(next) {
			t.Errorf("audit entry %+v: want by %s, of the document %s", en, auditLabel, sha(next))
		}
		if _, ok := latest[en.ID]; !ok {
			ids = append(ids, en.ID)
		}
		latest[en.ID] = en
	}
	reloaded := 0
	for _, id := range ids {
		switch en := latest[id]; en.Action {
		case audit.ConfigReloaded:
			reloaded++
		case audit.Refused:
			if en.Detail["action"] != audit.ConfigReloaded {
				t.Errorf("refused entry %+v: want the action it refused", en)
			}
		default:
			t.Errorf("audit entry %+v: want config.reloaded or action.refused", en)
		}
	}
	if reloaded != 1 {
		t.Errorf("audit entries %+v: want one reload recorded (the one after the restart)", entries)
	}
}
