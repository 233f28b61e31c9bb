package serve

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tailorcdp/tailor/audit"
	"github.com/tailorcdp/tailor/state"
)

// Erasures erases profiles (decision 0031): DELETE /v1/profiles/{key}
// asks, GET /v1/erasures/{id} tells how far it went.
type Erasures interface {
	// Erase puts a request to erase key on the events topic and returns
	// the erasure's id once Kafka has acknowledged it. by is the label of
	// the key that asked.
	Erase(ctx context.Context, key, by string) (id string, err error)
	// Erasure returns the outcome of erasure id as partition holds it
	// (partition < 0: the partition the id names), applied false while it
	// is not applied there yet. An error wrapping *ElsewhereError says
	// another instance holds that partition; one wrapping
	// state.ErrNotFound that the id names no erasure.
	Erasure(id string, partition int32) (e state.Erasure, applied bool, err error)
}

// ElsewhereError reports that the partition an erasure is kept in is held
// by the instance at Addr ("" when none is known yet).
type ElsewhereError struct {
	Partition int32
	Addr      string
}

func (e *ElsewhereError) Error() string {
	if e.Addr == "" {
		return fmt.Sprintf("partition %d is held by no instance known here", e.Partition)
	}
	return fmt.Sprintf("partition %d is held by the instance at %s", e.Partition, e.Addr)
}

// erasuresPrefix starts the path of an erasure; its id follows.
const erasuresPrefix = "/v1/erasures/"

// erasureRoute is the erasure route's path template.
const erasureRoute = erasuresPrefix + "{id}"

// ErasureAnswer is the body of DELETE /v1/profiles/{key} and GET
// /v1/erasures/{id}.
type ErasureAnswer struct {
	ID string `json:"id"`
	// State is "pending" until the erasure is applied in the partition of
	// the profile, then "done".
	State string `json:"state"`
	// Status is the path to ask how far it went.
	Status      string               `json:"status,omitempty"`
	RequestedAt *time.Time           `json:"requestedAt,omitempty"`
	AppliedAt   *time.Time           `json:"appliedAt,omitempty"`
	Found       *bool                `json:"found,omitempty"`
	Removed     *state.ErasureCounts `json:"removed,omitempty"`
	Suppressed  *bool                `json:"suppressed,omitempty"`
}

// adminAllowed answers 403 when the admin API is off and 401 for a
// request without an admin key, and reports whether it may go on, with
// the label of its key.
func (s *Server) adminAllowed(ctx *fasthttp.RequestCtx) (label string, ok bool) {
	if len(s.cfg.AdminKeys) == 0 {
		writeError(ctx, fasthttp.StatusForbidden, "", "the admin API is off: set http.admin_keys (--admin-keys) to turn it on")
		return "", false
	}
	user, ok := basicUser(ctx)
	return checkKey(ctx, user, ok, s.cfg.AdminKeys, "admin key", "the Basic auth user name or a Bearer token")
}

// audit records an admin action on the audit topic, stamped now; nil
// when the server records nothing (Config.Auditor).
func (s *Server) audit(e audit.Entry) error {
	if s.cfg.Auditor == nil {
		return nil
	}
	e.At = s.cfg.Now()
	// Not the request's context: the producer may keep a record's
	// context after the answer, when fasthttp has reused the request's.
	c, cancel := context.WithTimeout(context.Background(), s.cfg.ProduceTimeout)
	defer cancel()
	return s.cfg.Auditor.Record(c, e)
}

// erase serves DELETE /v1/profiles/{key}: 202 once the erasure is on the
// events topic, with its id.
func (s *Server) erase(ctx *fasthttp.RequestCtx, key string) {
	label, ok := s.adminAllowed(ctx)
	if !ok {
		return
	}
	if s.cfg.Erasures == nil {
		writeError(ctx, fasthttp.StatusNotImplemented, "", "erasure is not available: this server is not part of an engine")
		return
	}
	if key == "" {
		writeError(ctx, fasthttp.StatusBadRequest, "key", "profile key is empty")
		return
	}
	if max := s.cfg.Limits.MaxIDLength; max > 0 && len(key) > max {
		writeError(ctx, fasthttp.StatusBadRequest, "key", fmt.Sprintf("profile key is %d bytes, longer than any id the engine accepts (%d)", len(key), max))
		return
	}
	c, cancel := context.WithTimeout(context.Background(), s.cfg.ProduceTimeout)
	defer cancel()
	id, err := s.cfg.Erasures.Erase(c, key, label)
	if err != nil {
		s.log.Warn("erasure not recorded", "err", err)
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "", "Kafka did not acknowledge the erasure in time: it may not be applied, ask again after Retry-After (an erasure asked for twice erases once): "+err.Error())
		return
	}
	// The erasure happens now whatever the audit topic says: the
	// partition that applies it records it as applied, exactly once.
	if err := s.audit(audit.Entry{ID: id, Action: audit.ErasureRequested, By: label, Detail: map[string]any{"subject": audit.Subject(key)}}); err != nil {
		s.log.Warn("erasure accepted, but its request could not be recorded on the audit topic; it will be when applied", "id", id, "err", err)
	}
	status := erasuresPrefix + id
	ctx.Response.Header.Set("Location", status)
	writeJSON(ctx, fasthttp.StatusAccepted, ErasureAnswer{ID: id, State: "pending", Status: status})
}

// erasure serves GET /v1/erasures/{id}, following the erasure from the
// partition of the key it named to the partition of the profile that key
// had been merged into, on this instance or the one holding it.
func (s *Server) erasure(ctx *fasthttp.RequestCtx, id string) {
	if _, ok := s.adminAllowed(ctx); !ok {
		return
	}
	if s.cfg.Erasures == nil {
		writeError(ctx, fasthttp.StatusNotImplemented, "", "erasure is not available: this server is not part of an engine")
		return
	}
	partition := int32(-1)
	if v := ctx.QueryArgs().Peek("partition"); len(v) > 0 {
		n, err := strconv.ParseInt(string(v), 10, 32)
		if err != nil || n < 0 {
			writeError(ctx, fasthttp.StatusBadRequest, "partition", "partition is not a partition number: "+string(v))
			return
		}
		partition = int32(n)
	}
	for hops := 0; ; hops++ {
		e, applied, err := s.cfg.Erasures.Erasure(id, partition)
		var elsewhere *ElsewhereError
		switch {
		case errors.As(err, &elsewhere):
			s.erasureElsewhere(ctx, id, elsewhere)
			return
		case errors.Is(err, state.ErrNotFound):
			writeError(ctx, fasthttp.StatusNotFound, "", fmt.Sprintf("no erasure %q: its record is no erasure", id))
			return
		case err != nil:
			writeError(ctx, fasthttp.StatusBadRequest, "id", err.Error())
			return
		case !applied:
			writeJSON(ctx, fasthttp.StatusOK, ErasureAnswer{ID: id, State: "pending"})
			return
		case e.State == state.ErasureForwarded && hops < 8:
			partition = e.Partition
			continue
		}
		writeJSON(ctx, fasthttp.StatusOK, erasureAnswer(e))
		return
	}
}

// erasureElsewhere sends the question on to the instance holding the
// partition it is about, once.
func (s *Server) erasureElsewhere(ctx *fasthttp.RequestCtx, id string, e *ElsewhereError) {
	if e.Addr != "" && len(ctx.Request.Header.Peek(headerForwarded)) == 0 {
		path := erasuresPrefix + url.PathEscape(id) + "?partition=" + strconv.Itoa(int(e.Partition))
		if s.sendTo(ctx, e.Addr, "1", func(req *fasthttp.Request) { req.SetRequestURI(path) }) {
			return
		}
	}
	ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
	writeError(ctx, fasthttp.StatusServiceUnavailable, "", fmt.Sprintf("erasure %q: %v", id, e))
}

func erasureAnswer(e state.Erasure) ErasureAnswer {
	req, applied := time.UnixMilli(e.RequestedAt).UTC(), time.UnixMilli(e.AppliedAt).UTC()
	return ErasureAnswer{ID: e.ID, State: e.State, RequestedAt: &req, AppliedAt: &applied,
		Found: &e.Found, Removed: &e.Removed, Suppressed: &e.Suppressed}
}
