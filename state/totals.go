package state

// The partition's totals, kept beside its profiles: segment sizes
// (prefixSize), RFM histograms (prefixHist) and offer statistics
// (prefixStats); their keys and values.

import (
	"encoding/binary"
	"errors"
)

// statKey is the key of an offer's statistics.
func statKey(k OfferStatKey) []byte {
	b := pairKey(prefixStats, k.Offer, "")
	b = binary.AppendUvarint(b, uint64(len(k.Placement)))
	b = append(b, k.Placement...)
	return append(b, byte(k.Arm))
}

// parseStatKey parses what statKey wrote.
func parseStatKey(b []byte) (OfferStatKey, error) {
	bad := errors.New("malformed offer statistics key")
	if len(b) < 1 || b[0] != prefixStats {
		return OfferStatKey{}, bad
	}
	b = b[1:]
	var parts [2]string
	for i := range parts {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return OfferStatKey{}, bad
		}
		parts[i] = string(b[w : w+int(n)])
		b = b[w+int(n):]
	}
	if len(b) != 1 || b[0] > byte(Control) {
		return OfferStatKey{}, bad
	}
	return OfferStatKey{Offer: parts[0], Placement: parts[1], Arm: Arm(b[0])}, nil
}

// decodeCounts decodes what encodeCounts wrote; false for anything else.
func decodeCounts(v []byte) (OfferCounts, bool) {
	if len(v) != 24 {
		return OfferCounts{}, false
	}
	return OfferCounts{
		Impressions: binary.BigEndian.Uint64(v),
		Clicks:      binary.BigEndian.Uint64(v[8:]),
		Conversions: binary.BigEndian.Uint64(v[16:]),
	}, true
}

// Histogram keys in a store: prefix, histogram letter, big-endian bin.
func histKey(which byte, bin int64) []byte {
	k := []byte{prefixHist, which}
	return binary.BigEndian.AppendUint64(k, uint64(bin))
}

// encodeCounts is the value of an offer's statistics: 24 bytes.
func encodeCounts(c OfferCounts) []byte {
	b := make([]byte, 0, 24)
	b = binary.BigEndian.AppendUint64(b, c.Impressions)
	b = binary.BigEndian.AppendUint64(b, c.Clicks)
	return binary.BigEndian.AppendUint64(b, c.Conversions)
}
