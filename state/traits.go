package state

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/jsonenc"
)

// Trait provenance and normalisation (decision 0026). Each trait keeps
// where its value came from: the sending SDK's context.library.name, else
// SourceImport for what `tailor import` produced, else SourceAPI. The
// traits email and phone are normalised as they are applied (the events
// topic keeps what was sent): email trimmed and lower-cased, phone to
// E.164. A value that cannot be normalised is kept as sent, with the
// reason in Trait.Unnormalised.

// The trait sources that are not an SDK's library name.
const (
	// SourceImport: set by an event of `tailor import` that named no
	// library (event.ImportLibrary).
	SourceImport = "import"
	// SourceAPI: set by an event that named no library, produced
	// straight to the events topic.
	SourceAPI = "api"
	// SourceKeyPrefix + the write key's label: set by an event that
	// named no library, taken by the collect API (event.KeyLabel).
	SourceKeyPrefix = "key:"
	// SourceUnknown is shown for a trait stored before sources were kept.
	SourceUnknown = "unknown"
)

// The traits that are normalised.
const (
	TraitEmail = "email"
	TraitPhone = "phone"
)

// maxSourceLen bounds the source a trait keeps: a longer library name is
// cut (at a character boundary).
const maxSourceLen = 64

// TraitRules say how traits are normalised.
type TraitRules struct {
	// PhoneRegion is the region (ISO 3166-1 alpha-2, e.g. GB) a phone
	// number written without a country code is read in; "" reads only
	// numbers written with + and their country code.
	PhoneRegion string
}

// traitSource returns the source of the traits an event sets.
func traitSource(ev *event.Event) string {
	switch lib := ev.Library(); lib {
	case "":
		if ev.KeyLabel != "" {
			return bounded(SourceKeyPrefix + ev.KeyLabel)
		}
		return SourceAPI
	case event.ImportLibrary:
		return SourceImport
	default:
		return bounded(lib)
	}
}

// bounded cuts a source to maxSourceLen bytes.
func bounded(source string) string {
	if len(source) > maxSourceLen {
		return strings.ToValidUTF8(source[:maxSourceLen], "")
	}
	return source
}

// normalise returns the JSON value trait name keeps for v, and why it
// could not be normalised ("" when it was, or needs none). prev is the
// trait as held (nil for none): a value sent again as it was normalised
// is kept without parsing it again (a phone number's parse costs some
// 20 µs); a trait stored before normalisation (no source) is not taken
// for normalised.
func (r TraitRules) normalise(name string, v *fastjson.Value, prev *Trait) (json.RawMessage, string) {
	if name != TraitEmail && name != TraitPhone {
		return jsonenc.AppendValue(nil, v), ""
	}
	if v.Type() != fastjson.TypeString {
		return jsonenc.AppendValue(nil, v), "not a string: " + v.Type().String()
	}
	sent := jsonenc.AppendValue(nil, v)
	if prev != nil && prev.Source != "" && prev.Unnormalised == "" && bytes.Equal(sent, prev.Value) {
		return sent, ""
	}
	s := string(v.GetStringBytes())
	if name == TraitEmail {
		return jsonenc.AppendString(nil, strings.ToLower(strings.TrimSpace(s))), ""
	}
	e164, problem := r.phone(s)
	if problem != "" {
		return sent, problem
	}
	return jsonenc.AppendString(nil, e164), ""
}

// phone returns s in E.164, or why it cannot be.
func (r TraitRules) phone(s string) (string, string) {
	where := "without a default region (write it with + and the country code)"
	if r.PhoneRegion != "" {
		where = "for region " + r.PhoneRegion
	}
	num, err := phonenumbers.Parse(s, r.PhoneRegion)
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return "", "not a valid phone number " + where
	}
	return phonenumbers.Format(num, phonenumbers.E164), ""
}

// TraitSourceView is where a trait's value came from, in View.
type TraitSourceView struct {
	Source string    `json:"source"`
	At     time.Time `json:"at"`
	// Unnormalised says why the value is kept as sent (email and phone
	// only); absent when it was normalised.
	Unnormalised string `json:"unnormalised,omitempty"`
}

// traitSources returns the View of the traits' sources.
func (p *Profile) traitSources() map[string]TraitSourceView {
	m := make(map[string]TraitSourceView, len(p.Traits))
	for name, t := range p.Traits {
		src := t.Source
		if src == "" {
			src = SourceUnknown
		}
		m[name] = TraitSourceView{Source: src, At: time.UnixMilli(t.UpdatedAt).UTC(), Unnormalised: t.Unnormalised}
	}
	return m
}
