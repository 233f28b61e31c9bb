package state

import (
	"cmp"
	"slices"
	"time"

	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/event"
)

// Consent. An event may carry the visitor's consent choices in Segment's
// format, context.consent.categoryPreferences: {"Advertising": true, ...}.
// The profile keeps the latest choice per purpose (consents), which rules
// (consent()), decide and the outputs (Purpose) read, and the changes of
// choice as a bounded history with their time and source (consentLog),
// which the access export shows (decision 0029).

// MaxConsentHistory bounds the consent changes a profile keeps: past it,
// the oldest change that is not a purpose's latest choice goes first.
const MaxConsentHistory = 32

// consent is a purpose's latest choice.
type consent struct {
	granted bool
	at      int64 // event time, Unix ms
}

// consentChange is one change of a purpose's choice: the event time of
// the event that made it and where that event came from (as traits
// record it: traitSource).
type consentChange struct {
	purpose string
	granted bool
	at      int64 // event time, Unix ms
	source  string
}

// applyConsent records the consent choices an event carries. The latest
// event time wins per purpose; a choice that changes what the profile
// held (or is its first for the purpose) joins the history, one that
// restates it does not (analytics.js's consent wrappers send the choices
// on every event).
func (p *Profile) applyConsent(ev *event.Event) {
	if ev.Context == nil {
		return
	}
	prefs := ev.Context.Get("consent", "categoryPreferences")
	if prefs == nil || prefs.Type() != fastjson.TypeObject {
		return
	}
	obj, _ := prefs.Object()
	t := ev.Time.UnixMilli()
	source := ""
	obj.Visit(func(key []byte, v *fastjson.Value) {
		if v.Type() != fastjson.TypeTrue && v.Type() != fastjson.TypeFalse {
			return
		}
		purpose := string(key)
		granted := v.Type() == fastjson.TypeTrue
		old, ok := p.consents[purpose]
		if ok && old.at > t {
			return
		}
		if p.consents == nil {
			p.consents = make(map[string]consent)
		}
		p.consents[purpose] = consent{granted: granted, at: t}
		if ok && old.granted == granted {
			return
		}
		if source == "" {
			source = traitSource(ev)
		}
		if _, logged := lastChange(p.consentLog, purpose); ok && !logged {
			// A choice made before the history was kept: it goes in,
			// its source unknown, before the change that replaces it.
			p.logConsent(consentChange{purpose: purpose, granted: old.granted, at: old.at, source: SourceUnknown})
		}
		p.logConsent(consentChange{purpose: purpose, granted: granted, at: t, source: source})
	})
}

// lastChange returns the latest change of purpose in log.
func lastChange(log []consentChange, purpose string) (consentChange, bool) {
	for i := len(log) - 1; i >= 0; i-- {
		if log[i].purpose == purpose {
			return log[i], true
		}
	}
	return consentChange{}, false
}

// logConsent adds a change to the history, in event-time order, within
// MaxConsentHistory.
func (p *Profile) logConsent(c consentChange) {
	i := len(p.consentLog)
	for i > 0 && p.consentLog[i-1].at > c.at {
		i--
	}
	p.consentLog = slices.Insert(p.consentLog, i, c)
	p.consentLog = boundConsentLog(p.consentLog)
}

// boundConsentLog drops changes from log, oldest first, until it holds
// MaxConsentHistory: first those that a later change of the same purpose
// replaced, so that each purpose's latest choice stays while it can.
func boundConsentLog(log []consentChange) []consentChange {
	for len(log) > MaxConsentHistory {
		drop := 0
		for i, c := range log {
			if slices.ContainsFunc(log[i+1:], func(d consentChange) bool { return d.purpose == c.purpose }) {
				drop = i
				break
			}
		}
		log = slices.Delete(log, drop, drop+1)
	}
	return log
}

// mergeConsents adds the consent choices and history of o, a profile
// merged into p: per purpose the latest choice wins; the histories
// interleave in event-time order, a change both hold once.
func (p *Profile) mergeConsents(o *Profile) {
	for purpose, c := range o.consents {
		if cur, ok := p.consents[purpose]; !ok || c.at > cur.at {
			if p.consents == nil {
				p.consents = make(map[string]consent)
			}
			p.consents[purpose] = c
		}
	}
	if len(o.consentLog) == 0 {
		return
	}
	log := append(slices.Clone(p.consentLog), o.consentLog...)
	slices.SortStableFunc(log, func(x, y consentChange) int { return cmp.Compare(x.at, y.at) })
	log = slices.CompactFunc(log, func(x, y consentChange) bool { return x == y })
	p.consentLog = boundConsentLog(log)
}

// Consent reports whether the profile's latest choice for purpose grants it.
func (p *Profile) Consent(purpose string) bool { return p.consents[purpose].granted }

// ConsentChange is one change of a consent choice, as the access export
// shows it.
type ConsentChange struct {
	Purpose string    `json:"purpose"`
	Granted bool      `json:"granted"`
	At      time.Time `json:"at"`
	// Source is where the event that made the choice came from, as for
	// traits: the SDK's context.library.name, import or api; unknown for
	// a choice made before the history was kept.
	Source string `json:"source"`
}

// ConsentHistory returns the changes of the profile's consent choices,
// oldest first; a latest choice that the history does not hold (made
// before it was kept) is added at its time, its source unknown.
func (p *Profile) ConsentHistory() []ConsentChange {
	out := make([]ConsentChange, 0, len(p.consentLog)+len(p.consents))
	log := p.consentLog
	for purpose, c := range p.consents {
		if last, ok := lastChange(p.consentLog, purpose); !ok || last.granted != c.granted {
			log = append(slices.Clip(log), consentChange{purpose: purpose, granted: c.granted, at: c.at, source: SourceUnknown})
		}
	}
	for _, c := range log {
		out = append(out, ConsentChange{Purpose: c.purpose, Granted: c.granted, At: time.UnixMilli(c.at).UTC(), Source: c.source})
	}
	slices.SortStableFunc(out, func(x, y ConsentChange) int {
		return cmp.Or(x.At.Compare(y.At), cmp.Compare(x.Purpose, y.Purpose))
	})
	return out
}

// Purpose is a consent purpose an output carries people's data for
// (decision 0029): one of Segment's consent categories, such as
// "Marketing" or "Advertising". The empty Purpose names none: the output
// carries everyone's data.
type Purpose string

// Allows reports whether an output for the purpose may carry p's data:
// always under the empty purpose; else when p's latest choice for it
// grants it (never for a nil p, no profile).
func (pu Purpose) Allows(p *Profile) bool {
	return pu == "" || p != nil && p.Consent(string(pu))
}
