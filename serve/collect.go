package serve

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/event"
)

// collect serves Segment's tracking API: one event of type typ, or a batch.
// It answers only after Kafka has acknowledged every event of the request.
func (s *Server) collect(ctx *fasthttp.RequestCtx, typ event.Type, batch bool) {
	if !ctx.IsPost() {
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "", "use POST")
		return
	}
	const how = "the Basic auth user name (like Segment's SDKs) or as writeKey in the body"
	user, hasAuth := basicUser(ctx)
	if hasAuth && !checkKey(ctx, user, true, s.cfg.WriteKeys, "write key", how) {
		return
	}
	limit := s.cfg.Limits.MaxEventBytes
	if batch {
		limit = s.cfg.Limits.MaxBatchBytes
	}
	body, err := requestBody(ctx, limit)
	if err != nil {
		writeError(ctx, bodyErrorStatus(err), "", err.Error())
		return
	}
	// analytics.js and some server libraries put the key in the body.
	if !hasAuth && !checkKey(ctx, fastjson.GetString(body, "writeKey"), true, s.cfg.WriteKeys, "write key", how) {
		return
	}

	parser := s.parsers.Get().(*event.Parser)
	defer s.parsers.Put(parser)
	now := s.cfg.Now().UTC()
	var events []event.Event
	if batch {
		events, err = parser.ParseBatch(body, now)
	} else {
		var ev event.Event
		ev, err = parser.Parse(body, typ, now)
		events = []event.Event{ev}
	}
	if err != nil {
		var fe *event.Error
		switch {
		case errors.As(err, &fe) && errors.Is(err, event.ErrTooLarge):
			writeError(ctx, fasthttp.StatusRequestEntityTooLarge, fe.Field, fe.Error())
		case errors.As(err, &fe):
			writeError(ctx, fasthttp.StatusBadRequest, fe.Field, fe.Error())
		default:
			writeError(ctx, fasthttp.StatusBadRequest, "", err.Error())
		}
		return
	}

	// Stamp what the server knows and the consumer needs: the receive time
	// (Segment overwrites a client's), a messageId for dedup, the type.
	var arena fastjson.Arena
	receivedAt := arena.NewString(now.Format(time.RFC3339Nano))
	records := make([]*kgo.Record, len(events))
	for i := range events {
		ev := &events[i]
		ev.Stamp(&arena, receivedAt, newMessageID)
		records[i] = &kgo.Record{
			Topic:     s.cfg.EventsTopic,
			Key:       []byte(ev.Key()),
			Value:     ev.Root.MarshalTo(nil),
			Timestamp: now,
		}
	}
	pctx, cancel := context.WithTimeout(context.Background(), s.cfg.ProduceTimeout)
	defer cancel()
	if err := s.events.Produce(pctx, records...); err != nil {
		s.log.Warn("produce failed", "events", len(records), "err", err)
		writeError(ctx, fasthttp.StatusServiceUnavailable, "", "events not stored, retry later: "+err.Error())
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"success":true}`)
}

// requestBody returns the request body, gunzipped when sent with
// Content-Encoding: gzip, and at most limit bytes (after gunzipping).
func requestBody(ctx *fasthttp.RequestCtx, limit int) ([]byte, error) {
	body := ctx.PostBody()
	switch enc := string(bytes.ToLower(ctx.Request.Header.ContentEncoding())); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("body is not valid gzip: %w", err)
		}
		// Read one byte past the limit to tell "at the limit" from "over",
		// without unpacking a gzip bomb.
		body, err = io.ReadAll(io.LimitReader(zr, int64(limit)+1))
		if err != nil {
			return nil, fmt.Errorf("body is not valid gzip: %w", err)
		}
	default:
		return nil, fmt.Errorf("unsupported Content-Encoding %q: send gzip or no encoding", enc)
	}
	if limit > 0 && len(body) > limit {
		return nil, fmt.Errorf("body is over %d bytes, the limit of this endpoint: %w", limit, event.ErrTooLarge)
	}
	if len(body) == 0 {
		return nil, errors.New("body is empty: send a JSON object")
	}
	return body, nil
}

// bodyErrorStatus is the status answering a requestBody error.
func bodyErrorStatus(err error) int {
	if errors.Is(err, event.ErrTooLarge) {
		return fasthttp.StatusRequestEntityTooLarge
	}
	return fasthttp.StatusBadRequest
}

func newMessageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "tailor-" + hex.EncodeToString(b[:])
}
