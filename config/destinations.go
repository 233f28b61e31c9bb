package config

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Destination is where segment changes are delivered (package deliver):
// for now a webhook. Destinations are reloaded without a restart.
type Destination struct {
	Webhook *Webhook `yaml:"webhook"`
	// Segments names the segments whose entered and exited changes the
	// destination receives.
	Segments []string `yaml:"segments"`
	// Purpose, when set, is the consent purpose the destination receives
	// people's data for: a change of a profile whose latest choice does not
	// grant it is withheld (decision 0029).
	Purpose string `yaml:"purpose"`
	// Fields are the profile fields sent with each change: traits,
	// aggregates, rfm.
	Fields []string `yaml:"fields"`
	// MaxAttempts (failed attempts) and MaxAge (since the change was
	// written) bound the tries of one change: past either it goes to the
	// dead-letter topic.
	MaxAttempts int      `yaml:"max_attempts"`
	MaxAge      Duration `yaml:"max_age"`
}

// Webhook is an HTTPS (or HTTP) endpoint changes are POSTed to as JSON,
// signed with Secret (X-Tailor-Signature).
type Webhook struct {
	URL     string            `yaml:"url"`
	Secret  string            `yaml:"secret"`
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds one request (default 10s).
	Timeout Duration `yaml:"timeout"`
	// RateLimit bounds the requests per second (off: no limit).
	RateLimit Rate `yaml:"rate_limit"`
	// BatchSize is how many changes one request carries (default 1).
	BatchSize int `yaml:"batch_size"`
}

// Destination defaults and bounds.
const (
	DefaultWebhookTimeout = 10 * time.Second
	DefaultMaxAttempts    = 20
	DefaultMaxAge         = 24 * time.Hour
	MaxBatchSize          = 1000
	minSecretLen          = 16
)

// DestinationFields are the profile fields a destination may ask for.
var destinationFields = map[string]bool{"traits": true, "aggregates": true, "rfm": true}

// reservedHeaders are set by tailor on every delivery.
var reservedHeaders = map[string]bool{"Content-Type": true, "X-Tailor-Signature": true, "Idempotency-Key": true, "Content-Length": true, "Host": true}

var destinationName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// WithDefaults returns d with its unset bounds at their defaults.
func (d Destination) WithDefaults() Destination {
	if d.MaxAttempts == 0 {
		d.MaxAttempts = DefaultMaxAttempts
	}
	if d.MaxAge == 0 {
		d.MaxAge = Duration(DefaultMaxAge)
	}
	if w := d.Webhook; w != nil {
		c := *w
		if c.Timeout == 0 {
			c.Timeout = Duration(DefaultWebhookTimeout)
		}
		if c.BatchSize == 0 {
			c.BatchSize = 1
		}
		d.Webhook = &c
	}
	return d
}

// validateDestinations checks each destination, naming it and the field
// at fault. That the segments exist is checked where they are compiled
// (engine).
func validateDestinations(ds map[string]Destination) []error {
	names := make([]string, 0, len(ds))
	for name := range ds {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		errs = append(errs, validateDestination(name, ds[name])...)
	}
	return errs
}

func validateDestination(name string, d Destination) []error {
	at := "destinations." + name
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", at, field, fmt.Sprintf(format, args...)))
	}
	if !destinationName.MatchString(name) {
		errs = append(errs, fmt.Errorf("%s: a destination name is 1 to 63 of a-z, 0-9, _ and -, starting with a letter or digit", at))
	}
	if len(d.Segments) == 0 {
		bad("segments", "empty: name the segments whose changes it receives")
	}
	if p := d.Purpose; p != strings.TrimSpace(p) {
		bad("purpose", "%q has spaces around it: consent purposes are matched exactly", p)
	}
	for _, f := range d.Fields {
		if !destinationFields[f] {
			bad("fields", "%q: want traits, aggregates or rfm", f)
		}
	}
	if d.MaxAttempts < 0 {
		bad("max_attempts", "%d, want at least 1 (0: the default, %d)", d.MaxAttempts, DefaultMaxAttempts)
	}
	if d.MaxAge < 0 {
		bad("max_age", "%s must not be negative", &d.MaxAge)
	}
	if d.Webhook == nil {
		errs = append(errs, fmt.Errorf("%s: no webhook: a destination needs webhook.url and webhook.secret", at))
		return errs
	}
	return append(errs, validateWebhook(at+".webhook", d.Webhook)...)
}

func validateWebhook(at string, w *Webhook) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", at, field, fmt.Sprintf(format, args...)))
	}
	if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("url", "%q: want an absolute http or https URL", w.URL)
	}
	if len(w.Secret) < minSecretLen {
		bad("secret", "%d characters, want at least %d (the signature's key)", len(w.Secret), minSecretLen)
	}
	for h := range w.Headers {
		if reservedHeaders[http.CanonicalHeaderKey(h)] {
			bad("headers", "%s is set by tailor", h)
		}
	}
	if w.Timeout < 0 {
		bad("timeout", "%s must not be negative", &w.Timeout)
	}
	if w.BatchSize < 0 || w.BatchSize > MaxBatchSize {
		bad("batch_size", "%d, want 1 to %d (0: the default, 1)", w.BatchSize, MaxBatchSize)
	}
	return errs
}

// errNoSegment is wrapped by ValidateDestinationSegments' errors.
var errNoSegment = errors.New("no such segment")

// ValidateDestinationSegments checks that every destination names known
// segments only (known reports whether a segment is configured).
func ValidateDestinationSegments(ds map[string]Destination, known func(string) bool) error {
	var errs []error
	for name, d := range ds {
		for _, s := range d.Segments {
			if !known(s) {
				errs = append(errs, fmt.Errorf("destinations.%s.segments: %q: %w", name, s, errNoSegment))
			}
		}
	}
	return errors.Join(errs...)
}
