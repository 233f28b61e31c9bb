package state

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fastjson"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailorcdp/tailor/event"
)

// Products configures what each partition store learns about products
// from the stream, for recommendations: popularity decaying with time, what
// is bought together, and per profile what was viewed and bought.
type Products struct {
	// Weights says how much each track event adds to the popularity of
	// the products it names (properties.product_id, or products[]).
	Weights map[string]float64
	// HalfLife is how fast popularity fades.
	HalfLife time.Duration
	// Max bounds the products a partition store keeps (the least popular
	// make room for new ones).
	Max int
	// Together is how many co-bought products are counted per product
	// (a Space-Saving top-k: the heavy hitters are exact enough).
	Together int
	// OrderItems bounds the products of one order that count (bought,
	// popular, bought together: an order of n items makes n×(n-1) pairs).
	OrderItems int
	// RecentlyViewed and Bought bound the product ids kept per profile.
	RecentlyViewed int
	Bought         int
}

// DefaultProducts weighs views, cart adds and orders like DefaultInterests.
func DefaultProducts() *Products {
	return &Products{
		Weights:        map[string]float64{"Product Viewed": 1, "Product Added": 3, event.OrderCompleted: 5},
		HalfLife:       7 * 24 * time.Hour,
		Max:            50000,
		Together:       64,
		OrderItems:     30,
		RecentlyViewed: 20,
		Bought:         100,
	}
}

// maxProductText bounds each descriptive field kept of a product, and
// maxProductID its id (longer ids are not counted).
const (
	maxProductText = 512
	maxProductID   = 128
)

// Product is what a partition knows about a product from its events. The
// descriptive fields come from the latest event that carried them.
type Product struct {
	ID       string  `json:"product_id"`
	Name     string  `json:"name,omitempty"`
	Category string  `json:"category,omitempty"`
	Price    float64 `json:"price,omitempty"`
	URL      string  `json:"url,omitempty"`
	ImageURL string  `json:"image_url,omitempty"`
	// Seen is the latest event time (Unix ms) that mentioned the product.
	Seen int64 `json:"-"`

	popularity interest
	together   []Together // Space-Saving counters, unordered
	filter     []uint32   // their admission filter (nil until full)
}

// Together counts the orders in which another product was bought with one.
// Count may overstate the truth by up to Err (a counter taken over from
// another product starts from that one's count); Count-Err never does.
type Together struct {
	ID    string
	Count uint64
	Err   uint64
}

// AtLeast returns the orders the pair is certainly in: Count - Err.
func (t Together) AtLeast() uint64 { return t.Count - t.Err }

// Popularity returns the product's decayed popularity at now.
func (p *Product) Popularity(c *Products, now time.Time) float64 {
	return p.popularity.decayed(now.UnixMilli(), c.HalfLife)
}

// BoughtWith returns the products counted as bought with this one, in no
// particular order. The slice must not be modified.
func (p *Product) BoughtWith() []Together { return p.together }

func (p *Product) clone() *Product {
	c := *p
	c.together = slices.Clone(p.together)
	c.filter = slices.Clone(p.filter)
	return &c
}

// describe takes the descriptive fields an event object (properties or
// one of products[]) carries. It returns how many bytes the product's
// encoding may have grown.
func (p *Product) describe(obj *fastjson.Value, t int64) (grown int) {
	if t < p.Seen {
		return 0 // an older event: keep the newer description
	}
	p.Seen = t
	text := func(name string, dst *string) {
		if v := obj.Get(name); v != nil && v.Type() == fastjson.TypeString {
			if b := v.GetStringBytes(); len(b) <= maxProductText && string(b) != *dst {
				*dst = string(b)
				grown += len(b)
			}
		}
	}
	text("name", &p.Name)
	text("category", &p.Category)
	text("url", &p.URL)
	text("image_url", &p.ImageURL)
	if v := obj.Get("price"); v != nil && v.Type() == fastjson.TypeNumber {
		p.Price = v.GetFloat64()
	}
	return grown
}

func (p *Product) addPopularity(w float64, t int64, halfLife time.Duration) {
	cur := p.popularity
	switch {
	case cur.at == 0 && cur.score == 0:
		cur = interest{score: w, at: t}
	case t >= cur.at:
		cur = interest{score: cur.decayed(t, halfLife) + w, at: t}
	default:
		cur.score += interest{score: w, at: t}.decayed(cur.at, halfLife)
	}
	p.popularity = cur
}

// filterBuckets is the size of each product's admission filter.
const filterBuckets = 128

// addTogether counts one order in which id was bought with p, keeping at
// most k counters, by Filtered Space-Saving (Homem and Carvalho, 2010): an
// unmonitored id adds to a hashed filter bucket, and takes over the
// smallest counter only once its bucket reaches that counter's count. Plain
// Space-Saving would let every rare id displace a counter, so with a long
// tail of rare partners the counters would churn; the filter keeps the
// frequent partners in place.
//
// It returns how many bytes the product's encoding may have grown.
func (p *Product) addTogether(id string, k int) (grown int) {
	for i := range p.together {
		if p.together[i].ID == id {
			p.together[i].Count++
			return 0
		}
	}
	if len(p.together) < k {
		p.together = append(p.together, Together{ID: id, Count: 1})
		return 32 + len(id)
	}
	if p.filter == nil {
		p.filter = make([]uint32, filterBuckets)
		grown = 5 * filterBuckets
	}
	smallest := 0
	for i, c := range p.together {
		if c.Count < p.together[smallest].Count {
			smallest = i
		}
	}
	b := &p.filter[xxhash.Sum64String(id)%filterBuckets]
	if uint64(*b)+1 < p.together[smallest].Count {
		*b++
		return grown
	}
	// The evicted id's count goes back to its bucket, so it can return.
	old := p.together[smallest]
	ob := &p.filter[xxhash.Sum64String(old.ID)%filterBuckets]
	*ob = uint32(max(uint64(*ob), min(old.Count, math.MaxUint32)))
	n := uint64(*b)
	p.together[smallest] = Together{ID: id, Count: n + 1, Err: n}
	return grown + len(id)
}

// ProductID returns the product id of an event object (properties or one
// of products[]): product_id, else sku; numbers in their shortest form.
func ProductID(obj *fastjson.Value) string {
	if obj == nil {
		return ""
	}
	for _, name := range [...]string{"product_id", "sku"} {
		v := obj.Get(name)
		if v == nil {
			continue
		}
		switch v.Type() {
		case fastjson.TypeString:
			if b := v.GetStringBytes(); len(b) > 0 && len(b) <= maxProductID {
				return string(b)
			}
		case fastjson.TypeNumber:
			return strconv.FormatFloat(v.GetFloat64(), 'f', -1, 64)
		}
	}
	return ""
}

// pushRecent moves id to the end of list (the most recent), keeping at
// most n ids.
func pushRecent(list []string, id string, n int) []string {
	if i := slices.Index(list, id); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	list = append(list, id)
	if n > 0 && len(list) > n {
		list = slices.Delete(list, 0, len(list)-n)
	}
	return list
}

// RecentlyViewed returns the products the profile viewed, most recent
// first. The slice is the caller's.
func (p *Profile) RecentlyViewed() []string {
	out := make([]string, len(p.viewed))
	copy(out, p.viewed)
	slices.Reverse(out)
	return out
}

// Bought reports whether the profile bought the product (among the last
// Products.Bought products it bought).
func (p *Profile) Bought(id string) bool { return slices.Contains(p.bought, id) }

// Product encoding: like profiles, protobuf wire fields after a format byte.
const (
	productID       = 1  // bytes
	productName     = 2  // bytes
	productCategory = 3  // bytes
	productURL      = 4  // bytes
	productImage    = 5  // bytes
	productPrice    = 6  // fixed64 float64 bits
	productSeen     = 7  // varint ms
	productScore    = 8  // fixed64 float64 bits
	productScoreAt  = 9  // varint ms
	productTogether = 10 // message {1: id, 2: count, 3: error}, repeated
	productFilter   = 11 // packed varints: the admission filter's buckets
)

// sizeBound bounds the size of the product's encoding.
func (p *Product) sizeBound() int {
	n := 96 + len(p.ID) + len(p.Name) + len(p.Category) + len(p.URL) + len(p.ImageURL) + 5*len(p.filter)
	for _, t := range p.together {
		n += 32 + len(t.ID)
	}
	return n
}

func (p *Product) appendEncode(b []byte) []byte {
	b = append(b, formatV1)
	b = appendString(b, productID, p.ID)
	b = appendString(b, productName, p.Name)
	b = appendString(b, productCategory, p.Category)
	b = appendString(b, productURL, p.URL)
	b = appendString(b, productImage, p.ImageURL)
	b = appendFloat(b, productPrice, p.Price)
	b = appendVarint(b, productSeen, uint64(p.Seen))
	b = appendFloat(b, productScore, p.popularity.score)
	b = appendVarint(b, productScoreAt, uint64(p.popularity.at))
	var msg []byte
	for _, t := range p.together {
		b, msg = appendNamedCount(b, msg, productTogether, t.ID, t.Count, int64(t.Err))
	}
	if p.filter != nil {
		msg = msg[:0]
		for _, n := range p.filter {
			msg = protowire.AppendVarint(msg, uint64(n))
		}
		b = protowire.AppendTag(b, productFilter, protowire.BytesType)
		b = protowire.AppendBytes(b, msg)
	}
	return b
}

func decodeProduct(data []byte) (*Product, error) {
	if len(data) == 0 || data[0] != formatV1 {
		return nil, fmt.Errorf("%w: product of unknown format", errCorrupt)
	}
	p := &Product{}
	err := eachField(data[1:], func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
		switch num {
		case productID:
			p.ID = string(raw)
		case productName:
			p.Name = string(raw)
		case productCategory:
			p.Category = string(raw)
		case productURL:
			p.URL = string(raw)
		case productImage:
			p.ImageURL = string(raw)
		case productPrice:
			p.Price = math.Float64frombits(v)
		case productSeen:
			p.Seen = int64(v)
		case productScore:
			p.popularity.score = math.Float64frombits(v)
		case productScoreAt:
			p.popularity.at = int64(v)
		case productTogether:
			_, id, n, e, err := decodeCount(raw)
			if err != nil {
				return err
			}
			p.together = append(p.together, Together{ID: string(id), Count: n, Err: uint64(e)})
		case productFilter:
			p.filter = make([]uint32, 0, filterBuckets)
			for len(raw) > 0 {
				n, w := protowire.ConsumeVarint(raw)
				if w < 0 {
					return fmt.Errorf("%w: product filter: %v", errCorrupt, protowire.ParseError(w))
				}
				p.filter = append(p.filter, uint32(n))
				raw = raw[w:]
			}
			if len(p.filter) != filterBuckets {
				return fmt.Errorf("%w: product filter of %d buckets", errCorrupt, len(p.filter))
			}
		}
		return nil
	})
	return p, err
}
