package dataset

import (
	"bufio"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	_ "time/tzdata" // InvoiceDate is UK local time; do not depend on the host's zoneinfo

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/money"
	"github.com/tailorcdp/tailor/state"
)

// RetailLine is one invoice line of the Online Retail CSV.
type RetailLine struct {
	InvoiceNo   string
	StockCode   string
	Description string
	Quantity    int
	InvoiceDate time.Time // UTC
	UnitPrice   float64
	Price       money.Amount // UnitPrice exactly, as written
	CustomerID  string       // "17850" for "17850.0"; empty when the line has none
	Country     string
}

// Refund reports whether the line belongs to a cancellation invoice.
func (l RetailLine) Refund() bool { return strings.HasPrefix(l.InvoiceNo, "C") }

// OpenMaybeGzip opens a file, unpacking it when its name ends in .gz. When
// read is not nil it counts the bytes read from the file itself (before
// unpacking), for progress against the file size.
func OpenMaybeGzip(path string, read *atomic.Int64) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var r io.Reader = f
	if read != nil {
		r = &countingReader{r: f, n: read}
	}
	if strings.HasSuffix(path, ".gz") {
		if r, err = gzip.NewReader(bufio.NewReaderSize(r, 1<<16)); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return struct {
		io.Reader
		io.Closer
	}{r, f}, nil
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// ReadRetail calls fn for each line of the Online Retail CSV in r.
func ReadRetail(r io.Reader, fn func(RetailLine) error) error {
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		return fmt.Errorf("load Europe/London: %w", err)
	}
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<16))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("read header: %w", err)
	}
	want := []string{"InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"}
	if strings.Join(header, ",") != strings.Join(want, ",") {
		return fmt.Errorf("header is %v, want %v", header, want)
	}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		l := RetailLine{InvoiceNo: rec[0], StockCode: rec[1], Description: rec[2], Country: rec[7]}
		if l.Quantity, err = strconv.Atoi(rec[3]); err != nil {
			return fmt.Errorf("line %d: Quantity %q: %w", line, rec[3], err)
		}
		t, err := time.ParseInLocation("2006-01-02 15:04:05", rec[4], london)
		if err != nil {
			return fmt.Errorf("line %d: InvoiceDate %q: %w", line, rec[4], err)
		}
		l.InvoiceDate = t.UTC()
		if l.UnitPrice, err = strconv.ParseFloat(rec[5], 64); err != nil {
			return fmt.Errorf("line %d: UnitPrice %q: %w", line, rec[5], err)
		}
		if l.Price, err = money.Parse(rec[5]); err != nil {
			return fmt.Errorf("line %d: UnitPrice: %w", line, err)
		}
		l.CustomerID = strings.TrimSuffix(rec[6], ".0")
		if err := fn(l); err != nil {
			return err
		}
	}
}

// Invoice is the lines of one invoice, in file order.
type Invoice struct {
	No    string
	Lines []RetailLine
}

// Time is the invoice's time: its latest line's InvoiceDate (a few
// invoices' lines span a minute boundary).
func (inv Invoice) Time() time.Time {
	var t time.Time
	for _, l := range inv.Lines {
		if l.InvoiceDate.After(t) {
			t = l.InvoiceDate
		}
	}
	return t
}

// RetailInvoices reads the CSV and returns the invoices that have a
// customer, in the order of their first line.
func RetailInvoices(r io.Reader) ([]Invoice, error) {
	var invoices []Invoice
	index := make(map[string]int)
	err := ReadRetail(r, func(l RetailLine) error {
		if l.CustomerID == "" {
			return nil
		}
		i, ok := index[l.InvoiceNo]
		if !ok {
			i = len(invoices)
			index[l.InvoiceNo] = i
			invoices = append(invoices, Invoice{No: l.InvoiceNo})
		}
		invoices[i].Lines = append(invoices[i].Lines, l)
		return nil
	})
	return invoices, err
}

type retailProduct struct {
	ProductID string  `json:"product_id"`
	Name      string  `json:"name,omitempty"`
	Price     float64 `json:"price"`
	Quantity  int     `json:"quantity"`
}

type retailEvent struct {
	Type       string         `json:"type"`
	Event      string         `json:"event,omitempty"`
	UserID     string         `json:"userId"`
	MessageID  string         `json:"messageId"`
	Timestamp  string         `json:"timestamp"`
	Properties map[string]any `json:"properties,omitempty"`
	Traits     map[string]any `json:"traits,omitempty"`
}

// WriteRetailEvents converts the Online Retail CSV in r into Segment events,
// one JSON object a line: an identify call with the customer's country
// before the customer's first invoice, then one Order Completed per invoice
// (with its products) and one Order Refunded per cancellation invoice
// (number starting with C, quantities made positive). Lines without a
// CustomerID are skipped; CustomerID 17850.0 becomes userId 17850. Order
// events carry no revenue or total, so the engine computes the amount from
// the products. Product names are dropped from the few invoices that would
// otherwise exceed Segment's 32 KB event limit. messageIds are derived from
// the invoice numbers, so a second import of the file is deduplicated.
func WriteRetailEvents(r io.Reader, w io.Writer) (events int, err error) {
	invoices, err := RetailInvoices(r)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	identified := make(map[string]bool)
	limit := event.DefaultLimits().MaxEventBytes
	for _, inv := range invoices {
		first := inv.Lines[0]
		ts := inv.Time().Format(time.RFC3339)
		if !identified[first.CustomerID] {
			identified[first.CustomerID] = true
			if err := writeJSONLine(bw, retailEvent{
				Type: "identify", UserID: first.CustomerID, MessageID: "retail-identify-" + first.CustomerID,
				Timestamp: ts, Traits: map[string]any{"country": first.Country},
			}); err != nil {
				return events, err
			}
			events++
		}
		ev := retailEvent{Type: "track", Event: event.OrderCompleted, UserID: first.CustomerID, MessageID: "retail-" + inv.No, Timestamp: ts}
		if inv.Lines[0].Refund() {
			ev.Event = event.OrderRefunded
		}
		products := make([]retailProduct, len(inv.Lines))
		for i, l := range inv.Lines {
			products[i] = retailProduct{ProductID: l.StockCode, Name: l.Description, Price: l.UnitPrice, Quantity: abs(l.Quantity)}
		}
		ev.Properties = map[string]any{"order_id": inv.No, "currency": "GBP", "products": products}
		b, err := json.Marshal(ev)
		if err != nil {
			return events, err
		}
		if len(b) > limit {
			for i := range products {
				products[i].Name = ""
			}
			if b, err = json.Marshal(ev); err != nil {
				return events, err
			}
		}
		if _, err := bw.Write(append(b, '\n')); err != nil {
			return events, err
		}
		events++
	}
	return events, bw.Flush()
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// CustomerFacts are the order facts of one customer computed straight from
// the CSV lines, as the engine must report them.
type CustomerFacts struct {
	Orders         int          // distinct non-cancellation invoices
	Revenue        money.Amount // sum of quantity × price over their lines, exactly
	LastOrderAt    time.Time    // latest InvoiceDate of those lines
	Refunds        int          // distinct cancellation invoices
	RefundedAmount money.Amount // sum of |quantity| × price over their lines, exactly
}

// RetailFacts computes every customer's order facts from the CSV lines,
// without going through events.
func RetailFacts(r io.Reader) (map[string]*CustomerFacts, error) {
	facts := make(map[string]*CustomerFacts)
	seen := make(map[string]bool)
	err := ReadRetail(r, func(l RetailLine) error {
		if l.CustomerID == "" {
			return nil
		}
		f := facts[l.CustomerID]
		if f == nil {
			f = &CustomerFacts{}
			facts[l.CustomerID] = f
		}
		first := !seen[l.InvoiceNo]
		seen[l.InvoiceNo] = true
		if l.Refund() {
			if first {
				f.Refunds++
			}
			f.RefundedAmount = f.RefundedAmount.Add(l.Price.Mul(money.Units(int64(abs(l.Quantity)))))
			return nil
		}
		if first {
			f.Orders++
		}
		f.Revenue = f.Revenue.Add(l.Price.Mul(money.Units(int64(l.Quantity))))
		if l.InvoiceDate.After(f.LastOrderAt) {
			f.LastOrderAt = l.InvoiceDate
		}
		return nil
	})
	return facts, err
}

// CompareRetail checks each customer's profile, as get returns it, against
// the facts computed from the CSV, and returns one line per customer that
// differs. Revenue is compared exactly.
func CompareRetail(truth map[string]*CustomerFacts, get func(customerID string) (state.View, bool)) []string {
	var diffs []string
	ids := make([]string, 0, len(truth))
	for id := range truth {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		f := truth[id]
		p, ok := get(id)
		if !ok {
			diffs = append(diffs, "customer "+id+": no profile")
			continue
		}
		var problems []string
		if p.Orders.Count != uint64(f.Orders) {
			problems = append(problems, fmt.Sprintf("orders %d, want %d", p.Orders.Count, f.Orders))
		}
		if p.Orders.Revenue != f.Revenue {
			problems = append(problems, fmt.Sprintf("revenue %s, want %s", p.Orders.Revenue, f.Revenue))
		}
		var last time.Time
		if p.Orders.LastOrderAt != nil {
			last = *p.Orders.LastOrderAt
		}
		if !last.Equal(f.LastOrderAt) {
			problems = append(problems, fmt.Sprintf("last order %v, want %v", last, f.LastOrderAt))
		}
		if p.Orders.Refunds != uint64(f.Refunds) {
			problems = append(problems, fmt.Sprintf("refunds %d, want %d", p.Orders.Refunds, f.Refunds))
		}
		if p.Orders.RefundedAmount != f.RefundedAmount {
			problems = append(problems, fmt.Sprintf("refunded %s, want %s", p.Orders.RefundedAmount, f.RefundedAmount))
		}
		if got := p.Calls["identify"]; got != 1 {
			problems = append(problems, fmt.Sprintf("%d identify calls, want 1", got))
		}
		if len(problems) > 0 {
			diffs = append(diffs, "customer "+id+": "+strings.Join(problems, "; "))
		}
	}
	return diffs
}
