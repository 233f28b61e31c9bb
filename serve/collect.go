package serve

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/event"
)

// BatchAnswer is the body of a /v1/batch answer that refused some of its
// events: 200 when others were stored, 400 when none was. A batch whose
// events were all stored is answered {"success":true}.
type BatchAnswer struct {
	Success bool `json:"success"`
	// Code and Message are what SDKs log (segment-analytics-python).
	Code    string `json:"code"`
	Message string `json:"message"`
	// Error repeats Message on a 400, as every error answer has it.
	Error    string         `json:"error,omitempty"`
	Field    string         `json:"field,omitempty"`
	Accepted int            `json:"accepted"`
	Refused  []RefusedEvent `json:"refused"`
}

// RefusedEvent says why the event at Index of a batch was not stored.
type RefusedEvent struct {
	Index  int    `json:"index"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}

// collect serves Segment's tracking API: one event of type typ, or a batch.
// It answers only after Kafka has acknowledged every event it stores, and
// within ProduceTimeout of having read the body.
//
// Browsers' requests are answered like any other: the body may be sent as
// text/plain (analytics.js, sendBeacon) or JSON, since its Content-Type is
// not read, and the write key may come in Basic auth, as writeKey in the
// body (analytics.js), or as the writeKey query parameter (RudderStack's
// beacons, which can send no header). CORS is answered for the allowed
// origins (collectCORS). The rate limits per client address and per write
// key answer 429 (ratelimit.go).
func (s *Server) collect(ctx *fasthttp.RequestCtx, typ event.Type, batch bool) {
	if s.cors(ctx, collectCORS) {
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	if !ctx.IsPost() {
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "", "use POST")
		return
	}
	if !s.limits.allowAddress(ctx, "collect", s.limits.collectAddress) {
		return
	}
	user, hasAuth := basicUser(ctx)
	label := ""
	if hasAuth {
		var ok bool
		if label, ok = checkKey(ctx, user, true, s.cfg.WriteKeys, "write key", collectKeyHow); !ok ||
			!s.limits.allowKey(ctx, "collect", s.limits.collectKey, user) {
			return
		}
	}
	limit := s.cfg.Limits.MaxEventBytes
	if batch {
		limit = s.cfg.Limits.MaxBatchBytes
	}
	body, release, err := s.readBody(ctx, limit)
	if err != nil {
		bodyError(ctx, err)
		return
	}
	defer release()

	// Without Basic auth, the write key is in the body (analytics.js) or
	// the URL (RudderStack's beacons): the body is parsed once, and the
	// key taken from what the parser read, before anything is answered
	// about the events (bodyKey).
	parser := s.parsers.Get().(*event.Parser)
	defer s.parsers.Put(parser)
	now := s.cfg.Now().UTC()
	if batch {
		b, err := parser.ParseBatch(body, now)
		if !hasAuth {
			var ok bool
			if label, ok = s.bodyKey(ctx, b.WriteKey, err == nil, body); !ok {
				return
			}
		}
		if err != nil {
			eventError(ctx, err)
			return
		}
		s.collectBatch(ctx, parser, &b, now, label)
		return
	}
	ev, err := parser.Parse(body, typ, now)
	if !hasAuth {
		var ok bool
		if label, ok = s.bodyKey(ctx, writeKeyOf(&ev), err == nil, body); !ok {
			return
		}
	}
	if err != nil {
		s.refused.Inc()
		eventError(ctx, err)
		return
	}
	s.collectOne(ctx, parser, &ev, now, label)
}

// collectOne stores one valid event, taken with the write key labelled
// label, and answers.
func (s *Server) collectOne(ctx *fasthttp.RequestCtx, parser *event.Parser, ev *event.Event, now time.Time, label string) {
	var arena fastjson.Arena
	ev.Stamp(&arena, arena.NewString(now.Format(time.RFC3339Nano)), newMessageID)
	value, err := parser.AppendRecord(nil, ev, "")
	if err == nil {
		err = s.suppressed(ev)
	}
	if err != nil {
		s.refused.Inc()
		eventError(ctx, err)
		return
	}
	if !s.produce(ctx, []*kgo.Record{s.record(ev, value, now, label)}) {
		return
	}
	s.accepted.Inc()
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"success":true}`)
}

// bodyKey checks the write key of a collect call without Basic auth and
// the key's rate limit, answering 401, 403 or 429 when it fails (ok
// false), and returns the key's label: key is
// the body's writeKey as the parser read it, when parsed says the body
// was valid; else the body is looked at again for it (a malformed body,
// or an event refused, answers as an unauthorised one without a valid
// key); without one in the body, the writeKey query parameter.
func (s *Server) bodyKey(ctx *fasthttp.RequestCtx, key string, parsed bool, body []byte) (label string, ok bool) {
	if !parsed {
		key = fastjson.GetString(body, "writeKey")
	}
	if key == "" {
		key = string(ctx.QueryArgs().Peek("writeKey"))
	}
	label, ok = checkKey(ctx, key, true, s.cfg.WriteKeys, "write key", collectKeyHow)
	return label, ok && s.limits.allowKey(ctx, "collect", s.limits.collectKey, key)
}

// collectKeyHow says where a collect call's write key goes.
const collectKeyHow = "the Basic auth user name (like Segment's SDKs), as writeKey in the body, or as the writeKey query parameter"

// writeKeyOf returns the writeKey member of a parsed event ("" without
// one, or for the zero Event of a refused one).
func writeKeyOf(ev *event.Event) string {
	if ev.Root == nil {
		return ""
	}
	return string(ev.Root.GetStringBytes("writeKey"))
}

// collectBatch stores the valid events of a batch and answers with the
// verdicts on the others.
func (s *Server) collectBatch(ctx *fasthttp.RequestCtx, parser *event.Parser, b *event.Batch, now time.Time, label string) {
	var arena fastjson.Arena
	receivedAt := arena.NewString(now.Format(time.RFC3339Nano))
	refused := make([]RefusedEvent, 0, len(b.Refused))
	for _, r := range b.Refused {
		refused = append(refused, RefusedEvent{Index: r.Index, Field: r.Err.Field, Reason: r.Err.Error()})
	}
	records := make([]*kgo.Record, 0, len(b.Events))
	for i := range b.Events {
		ev := &b.Events[i]
		ev.Stamp(&arena, receivedAt, newMessageID)
		value, err := parser.AppendRecord(nil, ev, "batch["+strconv.Itoa(b.Index[i])+"]")
		if err == nil {
			err = s.suppressed(ev)
		}
		if err != nil {
			var fe *event.Error
			field := ""
			if errors.As(err, &fe) {
				field = fe.Field
			}
			refused = insertRefused(refused, RefusedEvent{Index: b.Index[i], Field: field, Reason: err.Error()})
			continue
		}
		records = append(records, s.record(ev, value, now, label))
	}
	s.refused.Add(float64(len(refused)))
	if len(records) == 0 {
		msg := fmt.Sprintf("none of the %d events was stored; the first refused: %s", len(refused), refused[0].Reason)
		writeJSON(ctx, fasthttp.StatusBadRequest, BatchAnswer{Code: "invalid_batch", Message: msg, Error: msg,
			Field: refused[0].Field, Refused: refused})
		return
	}
	if !s.produce(ctx, records) {
		return
	}
	s.accepted.Add(float64(len(records)))
	if len(refused) == 0 {
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"success":true}`)
		return
	}
	s.log.Debug("batch partly refused", "stored", len(records), "refused", len(refused), "first", refused[0].Reason)
	writeJSON(ctx, fasthttp.StatusOK, BatchAnswer{Code: "partly_stored", Accepted: len(records), Refused: refused,
		Message: fmt.Sprintf("%d of %d events stored; %d refused (not worth sending again), the first: %s",
			len(records), len(records)+len(refused), len(refused), refused[0].Reason)})
}

// insertRefused inserts r into refused, which is sorted by index.
func insertRefused(refused []RefusedEvent, r RefusedEvent) []RefusedEvent {
	i := len(refused)
	for i > 0 && refused[i-1].Index > r.Index {
		i--
	}
	refused = append(refused, RefusedEvent{})
	copy(refused[i+1:], refused[i:])
	refused[i] = r
	return refused
}

func (s *Server) record(ev *event.Event, value []byte, now time.Time, label string) *kgo.Record {
	r := &kgo.Record{Topic: s.cfg.EventsTopic, Key: []byte(ev.Key()), Value: value, Timestamp: now}
	if label != "" {
		r.Headers = []kgo.RecordHeader{{Key: event.HeaderKeyLabel, Value: []byte(label)}}
	}
	return r
}

// produce writes records and answers 503 with Retry-After, returning
// false, when Kafka has not acknowledged them within ProduceTimeout.
func (s *Server) produce(ctx *fasthttp.RequestCtx, records []*kgo.Record) bool {
	pctx, cancel := context.WithTimeout(context.Background(), s.cfg.ProduceTimeout)
	defer cancel()
	err := s.events.Produce(pctx, records...)
	if err == nil {
		return true
	}
	s.log.Warn("produce failed", "events", len(records), "err", err)
	ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(int(math.Ceil(s.cfg.ProduceTimeout.Seconds()))))
	writeErrorCode(ctx, fasthttp.StatusServiceUnavailable, "unavailable", "",
		"events not stored, send them again later (with the same messageId): "+err.Error())
	return false
}

// eventError answers an error of the event parser: 413 for what is too
// large, else 400.
func eventError(ctx *fasthttp.RequestCtx, err error) {
	var fe *event.Error
	switch {
	case errors.As(err, &fe) && errors.Is(err, event.ErrTooLarge):
		writeErrorCode(ctx, fasthttp.StatusRequestEntityTooLarge, "too_large", fe.Field, fe.Error())
	case errors.As(err, &fe) && fe.Field == "":
		writeErrorCode(ctx, fasthttp.StatusBadRequest, "invalid_body", "", fe.Error())
	case errors.As(err, &fe):
		writeErrorCode(ctx, fasthttp.StatusBadRequest, "invalid_event", fe.Field, fe.Error())
	default:
		writeErrorCode(ctx, fasthttp.StatusBadRequest, "invalid_body", "", err.Error())
	}
}

func newMessageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "tailor-" + hex.EncodeToString(b[:])
}

// suppressed returns an error naming the field of an event's id that was
// erased with suppression (privacy.suppress_erased), as far as this
// instance can tell (Config.Suppressed).
func (s *Server) suppressed(ev *event.Event) error {
	if s.cfg.Suppressed == nil {
		return nil
	}
	for _, id := range [...]struct{ field, value string }{{"userId", ev.UserID}, {"anonymousId", ev.AnonymousID}, {"previousId", ev.PreviousID}} {
		if id.value != "" && s.cfg.Suppressed(id.value) {
			return &event.Error{Field: id.field, Problem: "this id was erased, and its events are refused (privacy.suppress_erased)"}
		}
	}
	return nil
}
