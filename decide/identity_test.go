package decide_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/decide"
)

// TestIdentityVerification: with an identity secret, a userId without
// its userHash gets what an unknown visitor gets (the fallback, no
// recently viewed products, known false) and reserves no cap, however
// often it asks; the verified userId then still gets its capped offer
// up to the cap. Calls by anonymousId alone and trusted calls need no
// hash; a reload without the secret turns verification off.
func TestIdentityVerification(t *testing.T) {
	const secret = "site-secret"
	s := newStore(t, map[string]string{"fan": `views_7d >= 2`},
		[]decide.PlacementConfig{{Name: "hero", Fallback: "welcome"}, {Name: "recent", Kind: decide.KindRecentlyViewed}},
		[]decide.OfferConfig{
			{ID: "welcome", Placements: []string{"hero"}},
			{ID: "deal", Placements: []string{"hero"}, When: `segment("fan")`, Priority: 1, CapImpressions: 2, CapPer: 24 * time.Hour},
		})
	cfg := s.cfg
	cfg.IdentitySecret = secret
	s.d.Reload(cfg)
	s.apply(`{"type": "track", "userId": "u1", "event": "Product Viewed", "properties": {"product_id": "p1"}}`,
		`{"type": "track", "userId": "u1", "event": "Product Viewed", "properties": {"product_id": "p2"}}`,
		`{"type": "track", "anonymousId": "a1", "event": "Product Viewed", "properties": {"product_id": "p3"}}`)
	hash := decide.UserHash(secret, "u1")
	ask := func(fields string) answer {
		t.Helper()
		return s.decide(`{` + fields + `, "placements": ["hero", "recent"]}`)
	}
	unknown := func(a answer) bool {
		return !a.Known && !a.Personalised && a.offers("hero") == "fallback:welcome" && len(a.Decisions["recent"].Products) == 0
	}

	for _, tc := range []struct{ name, fields string }{
		{"no hash", `"userId": "u1"`},
		{"another user's hash", fmt.Sprintf(`"userId": "u1", "userHash": %q`, decide.UserHash(secret, "u2"))},
		{"another secret's hash", fmt.Sprintf(`"userId": "u1", "userHash": %q`, decide.UserHash("guess", "u1"))},
		{"cut short", fmt.Sprintf(`"userId": "u1", "userHash": %q`, hash[:63])},
		{"not hex", fmt.Sprintf(`"userId": "u1", "userHash": %q`, "zz"+hash[2:])},
		{"base64", `"userId": "u1", "userHash": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="`},
		{"with an anonymousId", `"userId": "u1", "anonymousId": "a1"`},
	} {
		for range 3 { // more calls than the cap: none may reserve it
			if a := ask(tc.fields); !unknown(a) || !a.Unverified || a.Key != "u1" {
				t.Errorf("%s: answered %+v, want an unknown visitor's answer marked unverified", tc.name, a.Answer)
			}
		}
	}
	if n := s.d.Unverified(); n != 21 {
		t.Errorf("Unverified() = %d, want 21", n)
	}

	// The verified visitor gets the capped offer twice: the unverified
	// calls reserved nothing.
	for i := range 3 {
		a := ask(fmt.Sprintf(`"userId": "u1", "userHash": %q`, strings.ToUpper(hash)))
		want := "deal"
		if i == 2 {
			want = "welcome" // deal capped; welcome is eligible
		}
		if !a.Known || a.Unverified || a.offers("hero") != want || len(a.Decisions["recent"].Products) != 2 {
			t.Errorf("verified call %d: %+v, want %s and two recently viewed products", i, a.Answer, want)
		}
	}
	if a := ask(`"anonymousId": "a1"`); !a.Known || a.Unverified || len(a.Decisions["recent"].Products) != 1 {
		t.Errorf("anonymousId alone: %+v", a.Answer)
	}
	if a := ask(`"userId": "nobody"`); !unknown(a) || !a.Unverified {
		t.Errorf("a stranger's unverified call: %+v", a.Answer)
	}
	if a := ask(fmt.Sprintf(`"userId": "nobody", "userHash": %q`, decide.UserHash(secret, "nobody"))); !unknown(a) || a.Unverified {
		t.Errorf("a stranger's verified call: %+v", a.Answer)
	}
	if got := s.d.SignUser("u1"); got != hash {
		t.Errorf("SignUser = %s, want %s", got, hash)
	}

	// A trusted caller (a read key) needs no hash.
	var p fastjson.Parser
	req, err := decide.ParseRequest(&p, []byte(`{"userId": "u1", "placements": ["recent"]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Trusted = true
	out, err := s.d.Decide(nil, &req)
	var a decide.Answer
	if err != nil || json.Unmarshal(out, &a) != nil || !a.Known || a.Unverified {
		t.Errorf("trusted call: %s, %v", out, err)
	}

	cfg.IdentitySecret = ""
	s.d.Reload(cfg)
	if a := ask(`"userId": "u1"`); !a.Known || a.Unverified || s.d.SignUser("u1") != "" {
		t.Errorf("without a secret: %+v", a.Answer)
	}
}

// TestUserHashDocumented: docs/http-api.md's example, whose value Python's
// hmac and openssl dgst -hmac compute too.
func TestUserHashDocumented(t *testing.T) {
	const want = "552f4abd3f3ae11a9ab326e20a974e5a412316ebc921e31634f68386171397e7"
	if got := decide.UserHash("s3cr3t", "user-123"); got != want {
		t.Errorf("UserHash = %s, want %s", got, want)
	}
}
