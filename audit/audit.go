package audit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The actions recorded. An action that goes through several states keeps
// one id, so that compaction keeps its latest state: an erasure is
// recorded as requested, then as applied, under the same id.
const (
	// ConfigReloaded: a configuration document was put in force, through
	// PUT /v1/admin/config (By: the admin key's label) or by a change of
	// the config file (By: ByConfigFile). Recorded before it takes effect.
	ConfigReloaded = "config.reloaded"
	// ConfigRejected: a document was refused (it did not parse, validate
	// or compile); nothing changed. Recorded as well as the broker allows.
	ConfigRejected = "config.rejected"
	// ConfigFailed: a reload recorded as ConfigReloaded could not be put
	// in force after all (the config file could not be written); the same
	// id, so that it replaces the ConfigReloaded record.
	ConfigFailed = "config.failed"
	// Refused: an action whose record was sent but not acknowledged in
	// time, and which was therefore refused. The same id, so that if the
	// first record is written after all, compaction keeps this one;
	// Detail's "action" names the action refused.
	Refused = "action.refused"
	// ErasureRequested and ErasureApplied: DELETE /v1/profiles/{key} was
	// accepted, and later applied by the partition that holds the key.
	ErasureRequested = "erasure.requested"
	ErasureApplied   = "erasure.applied"
	// ProfileExported: GET /v1/profiles/{key}/export answered a person's
	// data.
	ProfileExported = "profile.exported"
)

// ByConfigFile is the By of actions no key asked for: a change of the
// watched config file.
const ByConfigFile = "config-file"

// ErrNotRecorded is wrapped by the errors of an admin action refused
// because its audit record could not be written (the brokers are away):
// such an action does not happen, and HTTP answers 503.
var ErrNotRecorded = errors.New("the audit record could not be written")

// Entry is one admin action.
type Entry struct {
	// ID identifies the action; it is the record's key.
	ID string `json:"id"`
	// Action is what was done: one of the constants above.
	Action string `json:"action"`
	// At is when, in UTC.
	At time.Time `json:"at"`
	// By is the label of the key that asked for it (or ByConfigFile);
	// never a secret.
	By string `json:"by"`
	// Detail says what the action was about (the source of a
	// configuration, what it changed; the erasure's key), as JSON.
	Detail map[string]any `json:"detail,omitempty"`
}

// NewID returns a random action id: 32 hex digits.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Record returns the entry as a record of topic, keyed by its id, its
// value the entry's JSON. It fails only when Detail holds what JSON
// cannot encode (a NaN, a channel).
func (e Entry) Record(topic string) (*kgo.Record, error) {
	if e.ID == "" || e.Action == "" {
		return nil, fmt.Errorf("audit entry %q (%q): the id and the action must be set", e.ID, e.Action)
	}
	value, err := e.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: topic, Key: []byte(e.ID), Value: value}, nil
}

// MarshalJSON writes the entry with At in UTC.
func (e Entry) MarshalJSON() ([]byte, error) {
	type plain Entry // without this method
	p := plain(e)
	p.At = p.At.UTC()
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode audit entry %s (%s): %w", e.ID, e.Action, err)
	}
	return b, nil
}

// Decode reads a record's value back into an entry.
func Decode(value []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(value, &e); err != nil {
		return Entry{}, fmt.Errorf("decode audit record %.80q: %w", value, err)
	}
	if e.ID == "" || e.Action == "" {
		return Entry{}, fmt.Errorf("decode audit record %.80q: no id or action", value)
	}
	return e, nil
}

// Subject names a person in audit records without naming them: the
// first 16 bytes of the SHA-256 of their profile key, in hex. Whoever
// knows a key can find its records; the records alone name no one.
func Subject(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}
