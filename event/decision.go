package event

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The Segment-style event names that report what happened to a decision:
// the offer was shown, or clicked. An Order Completed event carrying a
// decision_id property is the decision's conversion.
const (
	OfferViewed  = "Offer Viewed"
	OfferClicked = "Offer Clicked"
)

// DecisionProperty is the event property carrying a decision id.
const DecisionProperty = "decision_id"

// MaxNameLength bounds placement and offer ids.
const MaxNameLength = 64

// Decision identifies one offer chosen for one placement of one decide
// call. Its id carries everything the feedback events need, so that a
// client only has to echo it back: placement, offer, arm, time, nonce.
type Decision struct {
	Placement string
	Offer     string
	Control   bool  // the profile is in the placement's control group
	At        int64 // Unix milliseconds of the decision
	Nonce     uint32
}

// ID returns the decision's id, e.g. "home_hero~shoes-10~t~mb3k2p1c~9f2c01aa".
func (d Decision) ID() string {
	return string(d.AppendID(make([]byte, 0, len(d.Placement)+len(d.Offer)+24)))
}

// AppendID appends the decision's id to dst.
func (d Decision) AppendID(dst []byte) []byte {
	dst = append(dst, d.Placement...)
	dst = append(dst, '~')
	dst = append(dst, d.Offer...)
	if d.Control {
		dst = append(dst, "~c~"...)
	} else {
		dst = append(dst, "~t~"...)
	}
	dst = strconv.AppendInt(dst, d.At, 36)
	dst = append(dst, '~')
	const hex = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		dst = append(dst, hex[d.Nonce>>shift&0xf])
	}
	return dst
}

// ParseDecisionID parses an id made by Decision.ID.
func ParseDecisionID(id string) (Decision, error) {
	parts := strings.Split(id, "~")
	if len(parts) != 5 {
		return Decision{}, errors.New("not a decision id issued by tailor (want placement~offer~arm~time~nonce)")
	}
	d := Decision{Placement: parts[0], Offer: parts[1]}
	if err := ValidName(d.Placement); err != nil {
		return Decision{}, fmt.Errorf("placement: %w", err)
	}
	if err := ValidName(d.Offer); err != nil {
		return Decision{}, fmt.Errorf("offer: %w", err)
	}
	switch parts[2] {
	case "t":
	case "c":
		d.Control = true
	default:
		return Decision{}, fmt.Errorf("arm %q: want t or c", parts[2])
	}
	at, err := strconv.ParseInt(parts[3], 36, 64)
	if err != nil || at < 0 {
		return Decision{}, fmt.Errorf("time %q is not a base-36 number", parts[3])
	}
	d.At = at
	nonce, err := strconv.ParseUint(parts[4], 16, 32)
	if err != nil || len(parts[4]) != 8 {
		return Decision{}, fmt.Errorf("nonce %q: want 8 hex digits", parts[4])
	}
	d.Nonce = uint32(nonce)
	return d, nil
}

// ValidName checks a placement or offer id: 1 to 64 letters, digits and
// _ . : - (so that it needs no escaping in a decision id, a URL or a
// metric label).
func ValidName(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	if len(s) > MaxNameLength {
		return fmt.Errorf("%q is longer than %d bytes", s, MaxNameLength)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return fmt.Errorf("%q has %q: use letters, digits, _ . : -", s, c)
		}
	}
	return nil
}

// Decision returns the decision an event reports on: the decision_id
// property, parsed. ok is false when the event carries none (validation
// has rejected events whose decision_id does not parse).
func (e *Event) Decision() (d Decision, ok bool) {
	v := e.Prop(DecisionProperty)
	if v == nil {
		return Decision{}, false
	}
	b, err := v.StringBytes()
	if err != nil {
		return Decision{}, false
	}
	d, err = ParseDecisionID(string(b))
	return d, err == nil
}

// validateDecision checks the decision_id property: required on the
// offer feedback events, and a well-formed id wherever it appears, so
// that feedback is never counted against the wrong offer or lost quietly.
func validateDecision(ev *Event, field string) error {
	var v = ev.Prop(DecisionProperty)
	if v == nil {
		if ev.Type == Track && (ev.Name == OfferViewed || ev.Name == OfferClicked) {
			return &Error{Field: field + "." + DecisionProperty, Problem: "is required for " + ev.Name + ": send the decision_id the decide call returned"}
		}
		return nil
	}
	s, ok := stringValue(v)
	if !ok {
		return &Error{Field: field + "." + DecisionProperty, Problem: "must be a string, not " + v.Type().String()}
	}
	if _, err := ParseDecisionID(s); err != nil {
		return &Error{Field: field + "." + DecisionProperty, Problem: fmt.Sprintf("%q: %v", s, err)}
	}
	return nil
}
