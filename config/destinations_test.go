package config

import (
	"errors"
	"strings"
	"testing"
)

func TestDestinations(t *testing.T) {
	const base = "http:\n  write_keys: [w]\n  read_keys: [r]\nsegments:\n  vip: 'traits.plan == \"vip\"'\ndestinations:\n"
	good := base + `  crm:
    webhook: {url: "https://crm.example.com/hook", secret: 0123456789abcdef, rate_limit: 5/s burst 10, batch_size: 20, headers: {X-Shop: a}}
    segments: [vip]
    purpose: Marketing
    fields: [traits, rfm]
`
	cfg, err := Parse([]byte(good), "test")
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Destinations["crm"].WithDefaults()
	if d.Webhook.Timeout != Duration(DefaultWebhookTimeout) || d.Webhook.BatchSize != 20 || d.Webhook.RateLimit != (Rate{PerSecond: 5, Burst: 10}) ||
		d.MaxAttempts != DefaultMaxAttempts || d.MaxAge != Duration(DefaultMaxAge) || d.Purpose != "Marketing" {
		t.Errorf("destination with defaults: %+v %+v", d, d.Webhook)
	}
	for _, c := range []struct{ doc, want string }{
		{"  Bad Name:\n    webhook: {url: 'http://x', secret: 0123456789abcdef}\n    segments: [vip]\n", "destinations.Bad Name: a destination name"},
		{"  crm:\n    webhook: {url: 'x', secret: 0123456789abcdef}\n    segments: [vip]\n", "destinations.crm.webhook.url"},
		{"  crm:\n    webhook: {url: 'http://x', secret: 0123456789abcdef, timeout: -1s}\n    segments: [vip]\n", "line 8, column 67: invalid duration"},
		{"  crm:\n    webhook: {url: 'http://x', secret: 0123456789abcdef, headers: {idempotency-key: a}}\n    segments: [vip]\n", "destinations.crm.webhook.headers"},
		{"  crm:\n    webhook: {url: 'http://x', secret: 0123456789abcdef}\n    segments: [vip]\n    purpose: ' Marketing'\n", "destinations.crm.purpose"},
		{"  crm:\n    webhook: {url: 'http://x', secret: 0123456789abcdef}\n    segments: [vip]\n    max_attempts: -1\n", "destinations.crm.max_attempts"},
		{"  crm:\n    webhook: {url: 'http://x', secret: 0123456789abcdef, rate_limit: fast}\n    segments: [vip]\n", "invalid rate"},
	} {
		_, err := Parse([]byte(base+c.doc), "test")
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error naming %s", c.doc, err, c.want)
		}
	}
	known := func(s string) bool { return s == "vip" }
	if err := ValidateDestinationSegments(map[string]Destination{"crm": {Segments: []string{"vip", "gone"}}}, known); err == nil ||
		!strings.Contains(err.Error(), `destinations.crm.segments: "gone"`) {
		t.Errorf("unknown segment: %v", err)
	}
}
