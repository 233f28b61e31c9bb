package decide

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
)

// Identity verification (Intercom's model): decide keys ship in web
// pages, so anyone can send a decide call naming any userId. With an
// identity secret configured, a call naming a userId must also carry
// userHash, the hex HMAC-SHA256 of the userId under the secret, which
// only the site's backend can compute. A call without a valid hash is
// answered as for an unknown visitor, without reading the profile at all
// (no segment-based offers, no recently viewed products, no "known", no
// control group, no cap reservation, no timing difference between
// customers and strangers), and says "unverified": true. Calls by
// anonymousId alone, and calls made with a read key (Request.Trusted:
// read keys never leave the site's servers), need no hash.

// UserHash returns the userHash a site's backend sends with userID: the
// hex HMAC-SHA256 of userID under secret.
func UserHash(secret, userID string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(userID))
	return hex.EncodeToString(m.Sum(nil))
}

// verifier checks userHashes under one secret; nil verifies everything
// (no secret configured).
type verifier struct {
	macs sync.Pool // of hash.Hash keyed with the secret
}

func newVerifier(secret string) *verifier {
	if secret == "" {
		return nil
	}
	v := &verifier{}
	v.macs.New = func() any { return hmac.New(sha256.New, []byte(secret)) }
	return v
}

// verified reports whether r may read the profile of its userId.
func (v *verifier) verified(r *Request) bool {
	if v == nil || r.UserID == "" || r.Trusted {
		return true
	}
	var got [sha256.Size]byte
	if len(r.UserHash) != hex.EncodedLen(len(got)) {
		return false
	}
	if _, err := hex.Decode(got[:], []byte(r.UserHash)); err != nil {
		return false
	}
	var want [sha256.Size]byte
	return hmac.Equal(got[:], v.sum(want[:0], r.UserID))
}

// sum appends the HMAC of userID to dst.
func (v *verifier) sum(dst []byte, userID string) []byte {
	m := v.macs.Get().(hash.Hash)
	defer v.macs.Put(m)
	m.Reset()
	m.Write([]byte(userID))
	return m.Sum(dst)
}

// SignUser returns userID's userHash under the running identity secret
// ("" without one), for a request the server makes on a verified
// caller's behalf: asking the instance that holds the profile a visitor's
// profile was merged into.
func (d *Decider) SignUser(userID string) string {
	v := d.cur.Load().verify
	if v == nil {
		return ""
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(v.sum(sum[:0], userID))
}

// Unverified returns the decide calls answered as for an unknown visitor
// because their userId came without a valid userHash.
func (d *Decider) Unverified() uint64 { return d.unverified.Load() }
