package decide

import (
	"fmt"

	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/jsonenc"
)

// MaxPlacements bounds the placements of one decide call.
const MaxPlacements = 20

// Request is one decide call: whose profile, which placements, and the
// page context that rules read as context.*.
type Request struct {
	UserID      string
	AnonymousID string
	// UserHash proves the caller may ask about UserID: its hex
	// HMAC-SHA256 under the identity secret, computed by the site's
	// backend (identity.go).
	UserHash string
	// Trusted says the caller used a key that never leaves the site's
	// servers (a read key): it needs no UserHash. Not read from the body.
	Trusted    bool
	Placements []string
	// Context is a JSON object (url, category, product_id, page, ...) or
	// nil. Its product_id anchors bought_together recommendations.
	Context *fastjson.Value
}

// Key returns the profile key the request is about: the userId, else the
// anonymousId.
func (r *Request) Key() string {
	if r.UserID != "" {
		return r.UserID
	}
	return r.AnonymousID
}

// AppendJSON appends the request as the JSON body of a decide call.
func (r *Request) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"userId":`...)
	dst = jsonenc.AppendString(dst, r.UserID)
	dst = append(dst, `,"anonymousId":`...)
	dst = jsonenc.AppendString(dst, r.AnonymousID)
	if r.UserHash != "" {
		dst = append(dst, `,"userHash":`...)
		dst = jsonenc.AppendString(dst, r.UserHash)
	}
	dst = append(dst, `,"placements":[`...)
	for i, name := range r.Placements {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonenc.AppendString(dst, name)
	}
	dst = append(dst, ']')
	if r.Context != nil {
		dst = append(dst, `,"context":`...)
		dst = jsonenc.AppendValue(dst, r.Context)
	}
	return append(dst, '}')
}

// RequestError is a problem with a decide request, naming the field.
type RequestError struct {
	Field   string
	Problem string
}

func (e *RequestError) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

// ParseRequest parses a POST /v1/decide body with p:
//
//	{"userId": "u1", "userHash": "9f86...", "anonymousId": "a1", "placements": ["home_hero", "recs"],
//	 "context": {"page": {"url": "..."}, "category": "shoes", "product_id": "p1"}}
//
// The request's values point into p and are valid until its next Parse.
func ParseRequest(p *fastjson.Parser, body []byte) (Request, error) {
	v, err := p.ParseBytes(body)
	if err != nil {
		return Request{}, &RequestError{Problem: "body is not valid JSON: " + err.Error()}
	}
	if v.Type() != fastjson.TypeObject {
		return Request{}, &RequestError{Problem: "body must be a JSON object, not " + v.Type().String()}
	}
	var r Request
	for _, f := range [...]struct {
		name string
		dst  *string
	}{{"userId", &r.UserID}, {"anonymousId", &r.AnonymousID}, {"userHash", &r.UserHash}} {
		fv := v.Get(f.name)
		if fv == nil || fv.Type() == fastjson.TypeNull {
			continue
		}
		b, err := fv.StringBytes()
		if err != nil {
			return Request{}, &RequestError{Field: f.name, Problem: "must be a string, not " + fv.Type().String()}
		}
		*f.dst = string(b)
	}
	list := v.Get("placements")
	if list == nil || list.Type() != fastjson.TypeArray {
		return Request{}, &RequestError{Field: "placements", Problem: "is required: an array of placement names"}
	}
	items, _ := list.Array()
	r.Placements = make([]string, 0, len(items))
	for i, item := range items {
		b, err := item.StringBytes()
		if err != nil {
			return Request{}, &RequestError{Field: fmt.Sprintf("placements[%d]", i), Problem: "must be a string, not " + item.Type().String()}
		}
		r.Placements = append(r.Placements, string(b))
	}
	if c := v.Get("context"); c != nil && c.Type() != fastjson.TypeNull {
		if c.Type() != fastjson.TypeObject {
			return Request{}, &RequestError{Field: "context", Problem: "must be an object, not " + c.Type().String()}
		}
		r.Context = c
	}
	return r, r.validate()
}

// validate checks what every request needs, however it arrived.
func (r *Request) validate() error {
	if r.UserID == "" && r.AnonymousID == "" {
		return &RequestError{Field: "userId", Problem: "userId or anonymousId is required"}
	}
	for _, id := range [...]string{r.UserID, r.AnonymousID} {
		if len(id) > event.DefaultLimits().MaxIDLength {
			return &RequestError{Field: "userId", Problem: fmt.Sprintf("is longer than %d bytes", event.DefaultLimits().MaxIDLength)}
		}
	}
	switch {
	case len(r.Placements) == 0:
		return &RequestError{Field: "placements", Problem: "is empty: name at least one placement"}
	case len(r.Placements) > MaxPlacements:
		return &RequestError{Field: "placements", Problem: fmt.Sprintf("has %d placements, the limit is %d", len(r.Placements), MaxPlacements)}
	}
	return nil
}

// QueryRequest builds a request from GET /v1/decide's query: userId,
// userHash, anonymousId, placement (repeated), and the context fields url, category
// and product_id, parsed by p (the request's context lives in it).
//
// The context is written as JSON and parsed rather than built in a
// fastjson.Arena: an arena quotes a string with control characters the
// way Go does (\x07), which no JSON reader, fastjson included, reads
// back as the same string.
func QueryRequest(p *fastjson.Parser, get func(name string) []byte, all func(name string) [][]byte) (Request, error) {
	r := Request{UserID: string(get("userId")), AnonymousID: string(get("anonymousId")), UserHash: string(get("userHash"))}
	for _, p := range all("placement") {
		r.Placements = append(r.Placements, string(p))
	}
	var obj []byte
	for _, name := range [...]string{"url", "category", "product_id"} {
		if v := get(name); len(v) > 0 {
			obj = append(append(obj, ','), '"')
			obj = append(append(obj, name...), '"', ':')
			obj = jsonenc.AppendBytes(obj, v)
		}
	}
	if obj != nil {
		obj[0] = '{'
		ctx, err := p.ParseBytes(append(obj, '}'))
		if err != nil {
			return r, &RequestError{Field: "context", Problem: fmt.Sprintf("cannot be read from the query: %v", err)}
		}
		r.Context = ctx
	}
	return r, r.validate()
}
