package decide_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/decide"
)

// BenchmarkDecide is one decide call for three placements (priority,
// learn, bought_together) over twelve offers, from a cached profile.
func BenchmarkDecide(b *testing.B) {
	var offers []decide.OfferConfig
	for i := range 12 {
		place := []string{"hero", "banner"}[i%2]
		offers = append(offers, decide.OfferConfig{ID: fmt.Sprintf("o%d", i), Placements: []string{place}, Priority: float64(i),
			When: fmt.Sprintf(`views_7d >= %d || segment("fan")`, i), Content: json.RawMessage(`{"title": "An offer", "link": "/x"}`)})
	}
	offers = append(offers, decide.OfferConfig{ID: "base", Placements: []string{"hero", "banner"}})
	s := newStore(b, map[string]string{"fan": `views_7d >= 5`},
		[]decide.PlacementConfig{{Name: "hero", Fallback: "base"}, {Name: "banner", Arbitration: decide.ByLearning, Fallback: "base", Control: 0.1},
			{Name: "recs", Kind: decide.KindBoughtTogether}}, offers)
	s.apply(`{"type": "track", "userId": "u", "event": "Product Viewed", "properties": {"product_id": "p1"}}`,
		`{"type": "track", "userId": "u2", "event": "Order Completed", "properties": {"order_id": "1", "products": [{"product_id": "p1"}, {"product_id": "p2"}, {"product_id": "p3"}]}}`)
	// verified: identity verification on, the call with its userHash.
	for _, secret := range []string{"", "bench-secret"} {
		name, hash := "plain", ""
		if secret != "" {
			name, hash = "verified", fmt.Sprintf(`"userHash": %q, `, decide.UserHash(secret, "u"))
		}
		cfg := s.cfg
		cfg.IdentitySecret = secret
		s.d.Reload(cfg)
		body := []byte(`{"userId": "u", ` + hash + `"placements": ["hero", "banner", "recs"], "context": {"product_id": "p1"}}`)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var p fastjson.Parser
				var out []byte
				for pb.Next() {
					req, err := decide.ParseRequest(&p, body)
					if err != nil {
						b.Fatal(err)
					}
					if out, err = s.d.Decide(out[:0], &req); err != nil {
						b.Fatal(err)
					}
					if bytes.Contains(out, []byte(`"unverified"`)) {
						b.Fatalf("answered as unverified: %s", out)
					}
				}
			})
		})
	}
}
