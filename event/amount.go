package event

import (
	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/money"
)

// OrderAmount returns the amount of an order or refund event, exactly (the
// decimals as sent): properties revenue, else total, else the sum of
// products' price × quantity (quantity defaults to 1). ok is false when
// none of them is present. Validation has already checked that each is a
// number.
func (e *Event) OrderAmount() (money.Amount, bool) {
	if a, ok := amountOf(e.Prop("revenue")); ok {
		return a, true
	}
	if a, ok := amountOf(e.Prop("total")); ok {
		return a, true
	}
	products := e.Prop("products")
	if products == nil || products.Type() != fastjson.TypeArray {
		return money.Amount{}, false
	}
	items, _ := products.Array()
	var amount money.Amount
	priced := false
	for _, item := range items {
		price, has := amountOf(item.Get("price"))
		if !has {
			continue
		}
		if q, has := amountOf(item.Get("quantity")); has {
			price = price.Mul(q)
		}
		amount, priced = amount.Add(price), true
	}
	return amount, priced
}

// amountOf returns a JSON number exactly, as the decimal it is written in;
// ok is false for a missing value or one that is not a number.
func amountOf(v *fastjson.Value) (money.Amount, bool) {
	if v == nil || v.Type() != fastjson.TypeNumber {
		return money.Amount{}, false
	}
	var buf [32]byte
	a, err := money.ParseBytes(v.MarshalTo(buf[:0]))
	return a, err == nil
}
