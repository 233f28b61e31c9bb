package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Key is an API key and the label it is known by: the label, never the
// secret, is what logs and the audit topic name (decision 0030).
type Key struct {
	Label  string
	Secret string
}

// String returns the label, so that printing a key or a configuration
// never shows the secret.
func (k Key) String() string { return k.Label }

// LogValue logs the label only.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.Label) }

// DerivedLabel is the label of a key written without one: "key-" and
// the first 8 hex digits of the SHA-256 of the secret. It tells keys
// apart without revealing them.
func DerivedLabel(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "key-" + hex.EncodeToString(sum[:4])
}

// NewKeys returns keys with derived labels.
func NewKeys(secrets ...string) Keys {
	ks := make(Keys, len(secrets))
	for i, s := range secrets {
		ks[i] = Key{Label: DerivedLabel(s), Secret: s}
	}
	return ks
}

// Keys is a list of API keys. On the command line and in the
// environment it is comma-separated entries, each the secret alone or
// label:secret; in YAML a list whose entries are such strings or
// mappings {label: ops, key: secret}. A secret cannot contain ':' (it
// could not be sent as the Basic auth user name, RFC 7617), so the first
// ':' always ends a label. Entries are checked by Config.Validate.
type Keys []Key

// Secrets returns the keys' secrets, in order.
func (ks Keys) Secrets() []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.Secret
	}
	return out
}

// Contains reports whether secret is one of the keys.
func (ks Keys) Contains(secret string) bool {
	for _, k := range ks {
		if k.Secret == secret {
			return true
		}
	}
	return false
}

// Set reads comma-separated entries, each secret or label:secret.
func (ks *Keys) Set(s string) error {
	*ks = nil
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*ks = append(*ks, parseKey(part))
		}
	}
	return nil
}

// String returns the labels, comma-separated: never the secrets.
func (ks *Keys) String() string {
	labels := make([]string, len(*ks))
	for i, k := range *ks {
		labels[i] = k.Label
	}
	return strings.Join(labels, ",")
}

// parseKey reads one entry: label:secret, or the secret alone with a
// derived label.
func parseKey(s string) Key {
	if label, secret, ok := strings.Cut(s, ":"); ok {
		return Key{Label: label, Secret: secret}
	}
	return Key{Label: DerivedLabel(s), Secret: s}
}

// UnmarshalYAML reads a list of keys, each a string (secret or
// label:secret) or a mapping {label, key}; a mapping without a label
// gets a derived one.
func (ks *Keys) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d, column %d: want a list of keys", n.Line, n.Column)
	}
	out := make(Keys, 0, len(n.Content))
	for i, e := range n.Content {
		switch e.Kind {
		case yaml.ScalarNode:
			out = append(out, parseKey(e.Value))
		case yaml.MappingNode:
			k, err := keyMapping(e)
			if err != nil {
				return fmt.Errorf("line %d, column %d: key %d: %w", e.Line, e.Column, i, err)
			}
			out = append(out, k)
		default:
			return fmt.Errorf("line %d, column %d: key %d: want a string (the key, or label:key) or {label: ..., key: ...}", e.Line, e.Column, i)
		}
	}
	*ks = out
	return nil
}

// keyMapping reads {label: ..., key: ...}.
func keyMapping(n *yaml.Node) (Key, error) {
	var k Key
	var label *string
	for i := 0; i+1 < len(n.Content); i += 2 {
		name, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return Key{}, fmt.Errorf("%s: want a string", name.Value)
		}
		switch name.Value {
		case "label":
			label = &v.Value
		case "key":
			k.Secret = v.Value
		default:
			return Key{}, fmt.Errorf("field %s not found in a key (label, key)", name.Value)
		}
	}
	k.Label = DerivedLabel(k.Secret)
	if label != nil {
		k.Label = *label
	}
	return k, nil
}

// labelPattern is what a label may be: safe in logs, URLs and JSON.
var labelPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// validateKeys checks the entries of the key lists: each has a label
// and a secret of the right form, and a label names one secret only.
func validateKeys(lists []namedKeys) []error {
	var errs []error
	owner := map[string]string{} // label: the secret it names
	where := map[string]string{} // label: the first entry naming it
	for _, l := range lists {
		for i, k := range l.keys {
			at := fmt.Sprintf("%s[%d]", l.name, i)
			switch {
			case k.Label == "":
				errs = append(errs, fmt.Errorf("%s: the label is empty: write label:key, {label: ..., key: ...}, or the key alone", at))
			case !labelPattern.MatchString(k.Label):
				errs = append(errs, fmt.Errorf("%s: label %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", at, k.Label))
			}
			switch {
			case k.Secret == "":
				errs = append(errs, fmt.Errorf("%s (%s): the key is empty", at, k.Label))
			case strings.Contains(k.Secret, ":"):
				errs = append(errs, fmt.Errorf("%s (%s): the key contains ':', which a Basic auth user name cannot; a label ends at the first ':'", at, k.Label))
			case strings.TrimSpace(k.Secret) != k.Secret:
				errs = append(errs, fmt.Errorf("%s (%s): the key begins or ends with white space", at, k.Label))
			}
			if k.Label == "" || k.Secret == "" {
				continue
			}
			if s, ok := owner[k.Label]; ok && s != k.Secret {
				errs = append(errs, fmt.Errorf("%s: label %q already names another key (%s): labels must tell keys apart", at, k.Label, where[k.Label]))
				continue
			}
			if _, ok := owner[k.Label]; !ok {
				owner[k.Label], where[k.Label] = k.Secret, at
			}
		}
	}
	return errs
}

type namedKeys struct {
	name string
	keys Keys
}
