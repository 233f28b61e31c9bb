// Package serve owns tailor's HTTP side, on fasthttp: the collect API
// (Segment's tracking API: /v1/batch, /v1/track, ...), the profile API,
// health and readiness probes, and Prometheus metrics. Every error answer
// is JSON saying what is wrong.
package serve

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/state"
)

// Events is where accepted events go: Produce returns once the records are
// acknowledged.
type Events interface {
	Produce(ctx context.Context, records ...*kgo.Record) error
}

// Profiles reads profiles by key and says whether state is caught up.
type Profiles interface {
	// ProfileView returns the JSON form of a profile now, or an error
	// wrapping state.ErrNotFound.
	ProfileView(key string) (state.View, error)
	Ready() bool
	// SegmentSizes returns the members of each segment in the partitions
	// this instance holds.
	SegmentSizes() map[string]int64
	// Model returns what the configuration declares about profiles.
	Model() *state.Model
	// Owner says whether key's profile is held here (local) or, if not,
	// the HTTP address of the instance that holds it ("" if unknown).
	Owner(key string) (addr string, local bool)
}

// Admin changes the running engine.
type Admin interface {
	// ReloadConfig replaces the running configuration with a YAML
	// document and returns what changed. An error wrapping
	// config.ErrInvalid rejects the document and leaves the running
	// configuration in force.
	ReloadConfig(doc []byte) (any, error)
}

// SegmentInfo describes a configured segment for GET /v1/segments.
type SegmentInfo struct {
	Name string `json:"name"`
	Rule string `json:"rule"`
	Size int64  `json:"size"`
}

// Config configures the HTTP server.
type Config struct {
	// WriteKeys are accepted by the collect API (Basic auth user name, as
	// Segment's SDKs send it, or the body's writeKey).
	WriteKeys []string
	// ReadKeys are accepted by the profile API (Basic auth user name or a
	// Bearer token). They must differ from the write keys.
	ReadKeys []string
	// EventsTopic is the topic accepted events are produced to.
	EventsTopic string
	Limits      event.Limits
	// DecideKeys are accepted by the decide endpoint only, besides the
	// read keys: unlike read keys they may ship in web pages.
	DecideKeys []string
	// CORSOrigins may call the decide endpoint from browsers ("*": any).
	CORSOrigins []string
	// Decisions answers /v1/decide and /v1/offers (nil: no placements).
	Decisions Decisions
	// Admin serves PUT /v1/admin/config to AdminKeys (nil or no keys:
	// the admin API is off).
	Admin     Admin
	AdminKeys []string
	// ProduceTimeout bounds the wait for Kafka's acknowledgement.
	ProduceTimeout time.Duration
	Logger         *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server is tailor's HTTP server.
type Server struct {
	cfg      Config
	events   Events
	profiles Profiles
	log      *slog.Logger
	metrics  fasthttp.RequestHandler
	latency  *prometheus.HistogramVec
	parsers  sync.Pool
	srv      *fasthttp.Server

	decisions     Decisions
	decideKeys    []string // read keys and decide keys
	decideScratch sync.Pool
	fwd           forwarder
}

// New returns a server; reg receives the HTTP metrics and is served on
// /metrics.
func New(cfg Config, events Events, profiles Profiles, reg *prometheus.Registry) (*Server, error) {
	for _, rk := range cfg.ReadKeys {
		for _, wk := range cfg.WriteKeys {
			if rk == wk {
				return nil, errors.New("a read key is also a write key: they must differ, so that a key shipped in a web page cannot read profiles")
			}
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ProduceTimeout <= 0 {
		cfg.ProduceTimeout = 10 * time.Second
	}
	s := &Server{
		cfg:      cfg,
		events:   events,
		profiles: profiles,
		log:      cfg.Logger,
		metrics:  fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tailor_http_request_duration_seconds",
			Help:    "HTTP request latency by route and status code.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 18),
		}, []string{"route", "code"}),
	}
	s.decisions = cfg.Decisions
	s.decideKeys = append(append([]string(nil), cfg.ReadKeys...), cfg.DecideKeys...)
	s.decideScratch.New = func() any { return &decideScratch{out: make([]byte, 0, 4096)} }
	s.parsers.New = func() any {
		p := event.NewParser(cfg.Limits)
		p.Stamp = true
		return p
	}
	reg.MustRegister(s.latency)
	s.srv = &fasthttp.Server{
		Handler: s.Handler(),
		Name:    "tailor",
		// Bodies over the event limits get a JSON 413 from the handler;
		// this cap only stops a client from streaming without end.
		MaxRequestBodySize:   4 << 20,
		ReadTimeout:          30 * time.Second,
		WriteTimeout:         30 * time.Second,
		IdleTimeout:          2 * time.Minute,
		NoDefaultContentType: true,
		// Requests fasthttp itself rejects get JSON errors too.
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			if errors.Is(err, fasthttp.ErrBodyTooLarge) {
				writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "", "body is over 4 MB")
				return
			}
			writeError(ctx, fasthttp.StatusBadRequest, "", "malformed HTTP request: "+err.Error())
		},
	}
	return s, nil
}

// Serve serves HTTP on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Shutdown stops accepting connections and waits for open requests.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.ShutdownWithContext(ctx) }

// Handler returns the request router.
func (s *Server) Handler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		route := s.route(ctx)
		code := ctx.Response.StatusCode()
		s.latency.WithLabelValues(route, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
	}
}

// collectType returns the call type a single-event collect endpoint implies.
func collectType(path string) (event.Type, bool) {
	name, ok := strings.CutPrefix(path, "/v1/")
	if !ok {
		return 0, false
	}
	return event.ParseType(name)
}

// route dispatches a request and returns its route label.
func (s *Server) route(ctx *fasthttp.RequestCtx) string {
	path := string(ctx.Path())
	switch {
	case path == "/v1/segments":
		s.segments(ctx)
		return path
	case path == "/v1/decide":
		s.decide(ctx)
		return path
	case path == "/v1/offers":
		s.offers(ctx)
		return path
	case path == "/v1/admin/config":
		s.adminConfig(ctx)
		return path
	case path == "/v1/batch" || path == "/v1/import":
		s.collect(ctx, 0, true)
		return "/v1/batch"
	case strings.HasPrefix(path, "/v1/") && !strings.Contains(path[4:], "/"):
		t, ok := collectType(path)
		if !ok {
			break
		}
		s.collect(ctx, t, false)
		return path
	case strings.HasPrefix(path, "/v1/profiles/"):
		s.profile(ctx, strings.TrimPrefix(path, "/v1/profiles/"))
		return "/v1/profiles/{key}"
	case path == "/healthz":
		writeJSON(ctx, fasthttp.StatusOK, map[string]any{"status": "ok"})
		return path
	case path == "/readyz":
		if s.profiles.Ready() {
			writeJSON(ctx, fasthttp.StatusOK, map[string]any{"status": "ready"})
		} else {
			writeJSON(ctx, fasthttp.StatusServiceUnavailable, map[string]any{"status": "catching up", "error": "not every assigned partition has applied its backlog yet"})
		}
		return path
	case path == "/metrics":
		s.metrics(ctx)
		return path
	}
	writeError(ctx, fasthttp.StatusNotFound, "", "no such endpoint: "+path)
	return "other"
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Success bool   `json:"success"`
	Error   string `json:"error"`
	// Field is the path of the offending field, when one is to blame.
	Field string `json:"field,omitempty"`
	// Errors lists every problem, when there are several (a rejected
	// configuration).
	Errors []string `json:"errors,omitempty"`
}

func writeError(ctx *fasthttp.RequestCtx, code int, field, msg string) {
	writeJSON(ctx, code, ErrorBody{Error: msg, Field: field})
}

func writeJSON(ctx *fasthttp.RequestCtx, code int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // rules and traits read better with < > & as they are
	if err := enc.Encode(v); err != nil {
		code = fasthttp.StatusInternalServerError
		b.Reset()
		b.WriteString(`{"success":false,"error":"encoding the answer failed"}`)
	}
	ctx.SetStatusCode(code)
	ctx.SetContentType("application/json")
	ctx.SetBody(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// basicUser returns the user name of a Basic Authorization header, or the
// token of a Bearer one.
func basicUser(ctx *fasthttp.RequestCtx) (string, bool) {
	h := string(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok {
		return "", false
	}
	switch strings.ToLower(scheme) {
	case "bearer":
		return strings.TrimSpace(cred), true
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return "", false
		}
		user, _, _ := strings.Cut(string(raw), ":")
		return user, true
	}
	return "", false
}

// checkKey answers 401 and returns false unless key (present says whether
// the request carried one) is among keys; how says where to send it.
func checkKey(ctx *fasthttp.RequestCtx, key string, present bool, keys []string, what, how string) bool {
	switch {
	case !present || key == "":
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Basic realm="tailor"`)
		writeError(ctx, fasthttp.StatusUnauthorized, "", "missing "+what+": send it as "+how)
		return false
	case !validKey(key, keys):
		writeError(ctx, fasthttp.StatusUnauthorized, "", "invalid "+what)
		return false
	}
	return true
}

// validKey compares in constant time, so timing does not reveal a key.
func validKey(key string, keys []string) bool {
	ok := 0
	for _, k := range keys {
		ok |= subtle.ConstantTimeCompare([]byte(key), []byte(k))
	}
	return ok == 1 && key != ""
}

// readAllowed checks a read endpoint's method and key, answering the
// error when it fails.
func (s *Server) readAllowed(ctx *fasthttp.RequestCtx) bool {
	if !ctx.IsGet() && !ctx.IsHead() {
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "", "use GET")
		return false
	}
	user, ok := basicUser(ctx)
	return checkKey(ctx, user, ok, s.cfg.ReadKeys, "read key", "the Basic auth user name or a Bearer token")
}

// segments serves the configured segments with their sizes.
func (s *Server) segments(ctx *fasthttp.RequestCtx) {
	if !s.readAllowed(ctx) {
		return
	}
	sizes := s.profiles.SegmentSizes()
	list := []SegmentInfo{}
	for _, seg := range s.profiles.Model().Segments.List() {
		list = append(list, SegmentInfo{Name: seg.Name, Rule: seg.Rule.Source, Size: sizes[seg.Name]})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"segments": list})
}

func (s *Server) profile(ctx *fasthttp.RequestCtx, key string) {
	if !s.readAllowed(ctx) {
		return
	}
	if key == "" {
		writeError(ctx, fasthttp.StatusBadRequest, "key", "profile key is empty")
		return
	}
	if s.forward(ctx, key) {
		return
	}
	v, err := s.profiles.ProfileView(key)
	var merged *state.MergedError
	switch {
	case errors.As(err, &merged):
		// Merged into a profile another instance holds: answered there.
		if !s.forwardMerged(ctx, merged.Into, func(req *fasthttp.Request) { req.SetRequestURI("/v1/profiles/" + url.PathEscape(merged.Into)) }) {
			writeError(ctx, fasthttp.StatusServiceUnavailable, "", err.Error())
		}
	case errors.Is(err, state.ErrNotFound):
		writeError(ctx, fasthttp.StatusNotFound, "", fmt.Sprintf("no profile with key %q", key))
	case err != nil:
		s.log.Warn("profile read failed", "key", key, "err", err)
		writeError(ctx, fasthttp.StatusServiceUnavailable, "", err.Error())
	default:
		writeJSON(ctx, fasthttp.StatusOK, v)
	}
}
