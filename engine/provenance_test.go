package engine_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTraitProvenance: identify calls over HTTP and through tailor import
// land as normalised traits (email trimmed and lower-cased, phone in
// E.164 in the configured region), each with its source and time, in the
// profile API; a value that cannot be normalised is kept and flagged, and
// a segment reads the normalised email.
func TestTraitProvenance(t *testing.T) {
	brokers := testkafka.Brokers(t)
	cfg := testConfig(t, brokers, testkafka.Prefix(t), t.TempDir())
	cfg.Traits.PhoneRegion = "GB"
	cfg.Segments = map[string]string{"staff": `traits.email == "jane@shop.example"`}
	e := startEngine(t, cfg)

	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for _, body := range []string{
		`{"userId": "jane", "timestamp": "2026-03-01T10:00:00Z", "traits": {"email": "  Jane@Shop.Example ", "phone": "07911 123456", "plan": "pro"}, "context": {"library": {"name": "analytics.js", "version": "2.11.1"}}}`,
		`{"userId": "bob", "timestamp": "2026-03-01T10:00:00Z", "traits": {"phone": "12", "email": 42}}`,
	} {
		if resp := e.post(t, "/v1/identify", body); resp.Status != http.StatusOK {
			t.Fatalf("identify: %d %s", resp.Status, resp.Body)
		}
	}
	p, err := stream.NewProducer(stream.ClientConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	lines := `{"type": "identify", "userId": "carol", "timestamp": "2026-03-01T10:00:00Z", "traits": {"email": "CAROL@X.CO"}}
{"type": "identify", "userId": "carol", "timestamp": "2026-03-01T10:00:00Z", "traits": {"phone": "+33 6 12 34 56 78"}, "context": {"library": {"name": "analytics-python"}}}
`
	if stats, err := stream.Import(context.Background(), strings.NewReader(lines), stream.ImportOptions{Producer: p, Topic: e.Topics().Events, Limits: testLimits()}); err != nil || stats.Accepted != 2 {
		t.Fatalf("import: %v; %s", err, stats)
	}

	// Produced straight to the events topic, with no library: api.
	raw := &kgo.Record{Topic: e.Topics().Events, Key: []byte("dave"),
		Value: []byte(`{"type": "identify", "userId": "dave", "timestamp": "2026-03-01T10:00:00Z", "traits": {"plan": "free"}}`)}
	if err := p.Produce(context.Background(), raw); err != nil {
		t.Fatal(err)
	}

	type trait struct{ value, source, unnormalised string }
	for key, want := range map[string]map[string]trait{
		"jane": {
			"email": {`"jane@shop.example"`, "analytics.js", ""},
			"phone": {`"+447911123456"`, "analytics.js", ""},
			"plan":  {`"pro"`, "analytics.js", ""},
		},
		"bob": {
			// No library: the label of the write key collect took it with.
			"phone": {`"12"`, "key:" + config.DerivedLabel(writeKey), "not a valid phone number for region GB"},
			"email": {`42`, "key:" + config.DerivedLabel(writeKey), "not a string: number"},
		},
		"dave": {"plan": {`"free"`, "api", ""}},
		"carol": {
			"email": {`"carol@x.co"`, "import", ""},
			"phone": {`"+33612345678"`, "analytics-python", ""},
		},
	} {
		v := e.waitProfile(t, key, func(v state.View) bool { return len(v.Traits) == len(want) })
		for name, w := range want {
			got := trait{string(v.Traits[name]), v.TraitSources[name].Source, v.TraitSources[name].Unnormalised}
			if got != w {
				t.Errorf("%s trait %s: %+v, want %+v", key, name, got, w)
			}
			if !v.TraitSources[name].At.Equal(at) {
				t.Errorf("%s trait %s set at %v, want %v", key, name, v.TraitSources[name].At, at)
			}
		}
		if _, staff := v.Segments["staff"]; staff != (key == "jane") {
			t.Errorf("%s in staff: %v, want %v (segments read the normalised email)", key, staff, key == "jane")
		}
	}
	// The events topic keeps what was sent.
	sent := false
	for _, r := range testkafka.Consume(t, brokers, e.Topics().Events, 5, 10*time.Second) {
		sent = sent || strings.Contains(string(r.Value), `"email":"  Jane@Shop.Example "`)
	}
	if !sent {
		t.Error("no record in the events topic holds jane's email as sent")
	}
	// The answer's JSON names them traitSources, beside traits as before.
	resp := do(t, "GET", e.url+"/v1/profiles/jane", readKey, nil, nil)
	for _, part := range []string{`"traits":{`, `"traitSources":{`, `"source":"analytics.js"`} {
		if !strings.Contains(string(resp.Body), part) {
			t.Errorf("profile JSON lacks %s: %s", part, resp.Body)
		}
	}
}
