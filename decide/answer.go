package decide

import "encoding/json"

// Answer is the JSON answer of a decide call, for clients written in Go
// and for documentation: the decider writes it by hand, without this type,
// and its tests decode every answer into it strictly.
type Answer struct {
	// Key is the profile key the answer is for: the userId, else the
	// anonymousId, or the key of the profile either was merged into.
	Key string `json:"key"`
	// Known says whether a profile was found; Personalised whether the
	// answers used it (it was found and consent allows).
	Known        bool `json:"known"`
	Personalised bool `json:"personalised"`
	// Unverified says the call named a userId without a valid userHash
	// while identity verification is on: it was answered as for an
	// unknown visitor, without reading the profile.
	Unverified bool `json:"unverified,omitempty"`
	// Decisions answers each placement asked for, by name.
	Decisions map[string]PlacementAnswer `json:"decisions"`
}

// PlacementAnswer is one placement's answer: Offers (and Control) for an
// offers placement; Kind, DecisionID and Products for a product placement.
type PlacementAnswer struct {
	Offers []OfferAnswer `json:"offers,omitempty"`
	// Control says the profile is in the placement's control group.
	Control    bool            `json:"control,omitempty"`
	Kind       string          `json:"kind,omitempty"`
	DecisionID string          `json:"decision_id,omitempty"`
	Products   []ProductAnswer `json:"products,omitempty"`
}

// OfferAnswer is one chosen offer.
type OfferAnswer struct {
	OfferID string `json:"offer_id"`
	// DecisionID goes back in the Offer Viewed, Offer Clicked and Order
	// Completed events about this offer.
	DecisionID string `json:"decision_id"`
	// Fallback says no offer was eligible (or the visitor is unknown, has
	// not consented, or is in the control group).
	Fallback bool `json:"fallback"`
	// Trusted says the offer's configuration marks its content safe to
	// insert as markup (tailor.js inserts its html field).
	Trusted bool            `json:"trusted,omitempty"`
	Content json.RawMessage `json:"content"`
}

// ProductAnswer is one recommended product, with its latest description.
type ProductAnswer struct {
	ID       string  `json:"product_id"`
	Name     string  `json:"name,omitempty"`
	Category string  `json:"category,omitempty"`
	URL      string  `json:"url,omitempty"`
	ImageURL string  `json:"image_url,omitempty"`
	Price    float64 `json:"price,omitempty"`
	Score    float64 `json:"score,omitempty"`
}
