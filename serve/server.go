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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/tailorcdp/tailor/audit"
	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/web"
)

// Events is where accepted events go: Produce returns once the records are
// acknowledged.
type Events interface {
	Produce(ctx context.Context, records ...*kgo.Record) error
}

// producerHealth is what an Events may say about its recent produces,
// for /readyz: whether the last one succeeded, since when, and its error.
type producerHealth interface {
	Health() (ok bool, since time.Time, err error)
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
	// document, asked for by the admin key labelled by, and returns what
	// changed. The reload is recorded on the audit topic before it takes
	// effect. An error wrapping config.ErrInvalid rejects the document;
	// one wrapping audit.ErrNotRecorded refuses the reload because its
	// record could not be written. Either way the running configuration
	// stays in force.
	ReloadConfig(ctx context.Context, doc []byte, by string) (any, error)
}

// SegmentInfo describes a configured segment for GET /v1/segments.
type SegmentInfo struct {
	Name string `json:"name"`
	Rule string `json:"rule"`
	Size int64  `json:"size"`
}

// Key is a key the API accepts, and the label that names it in logs and
// on the audit topic: never the secret.
type Key struct {
	Label  string
	Secret string
}

// Auditor records admin actions on the audit topic. Record returns once
// the record is acknowledged by every in-sync replica, or with an error
// wrapping audit.ErrNotRecorded; an admin action whose record fails does
// not happen, and is answered 503. Give it a context of its own, not the
// request's: the producer may keep it after the answer.
type Auditor interface {
	Record(ctx context.Context, e audit.Entry) error
}

// Config configures the HTTP server.
type Config struct {
	// WriteKeys are accepted by the collect API (Basic auth user name, as
	// Segment's SDKs send it, the body's writeKey, or the writeKey query
	// parameter).
	WriteKeys []Key
	// ReadKeys are accepted by the profile API (Basic auth user name or a
	// Bearer token). They must differ from the write keys.
	ReadKeys []Key
	// EventsTopic is the topic accepted events are produced to.
	EventsTopic string
	Limits      event.Limits
	// DecideKeys are accepted by the decide endpoint only, besides the
	// read keys: unlike read keys they may ship in web pages.
	DecideKeys []Key
	// CORSOrigins may call the decide and collect endpoints from browsers
	// ("*": any).
	CORSOrigins []string
	// Decisions answers /v1/decide and /v1/offers (nil: no placements).
	Decisions Decisions
	// Admin serves PUT /v1/admin/config to AdminKeys (nil or no keys:
	// the admin API is off).
	Admin     Admin
	AdminKeys []Key
	// Auditor records the admin actions serve performs itself (nil: none
	// is recorded); a configuration reload is recorded by Admin.
	Auditor Auditor
	// Erasures serves DELETE /v1/profiles/{key} and GET
	// /v1/erasures/{id} to AdminKeys (nil: 501).
	Erasures Erasures
	// Suppressed, when not nil, says whether an id was erased with
	// suppression: collect refuses its events.
	Suppressed func(id string) bool
	// ProduceTimeout bounds the wait for Kafka's acknowledgement: collect
	// answers 503 with Retry-After once it has passed (default 5 s).
	ProduceTimeout time.Duration
	// MaxBodyBytesInFlight bounds the bytes of the request bodies being
	// read and handled at once (default 64 MiB); BodyWait is how long a
	// request waits for room before it is answered 503 (default 1 s).
	MaxBodyBytesInFlight int64
	BodyWait             time.Duration
	// RateLimits bound collect and decide requests (ratelimit.go; the
	// zero value limits nothing).
	RateLimits RateLimits
	// Cluster describes the group of instances for GET /v1/cluster (nil:
	// 404).
	Cluster func(context.Context) (any, error)
	// Destinations describes the delivery destinations and their figures
	// for GET /v1/destinations (nil: 404).
	Destinations func(context.Context) (any, error)
	Logger       *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server is tailor's HTTP server.
type Server struct {
	// draining is set when a shutdown starts: /readyz answers 503 from
	// then on, while every other route still serves.
	draining atomic.Bool
	cfg      Config
	events   Events
	profiles Profiles
	log      *slog.Logger
	metrics  fasthttp.RequestHandler
	latency  *prometheus.HistogramVec
	parsers  sync.Pool
	srv      *fasthttp.Server
	bodies   *budget
	accepted prometheus.Counter
	refused  prometheus.Counter
	limits   *limiters

	routes        map[string]*route // by path (route.go)
	openapiDoc    []byte            // openapi.yaml as JSON
	script        *web.Asset        // tailor.js (tailorjs.go)
	decisions     Decisions
	decideKeys    []Key // read keys and decide keys
	decideScratch sync.Pool
	fwd           forwarder
}

// New returns a server; reg receives the HTTP metrics and is served on
// /metrics.
func New(cfg Config, events Events, profiles Profiles, reg *prometheus.Registry) (*Server, error) {
	for _, rk := range cfg.ReadKeys {
		for _, wk := range cfg.WriteKeys {
			if rk.Secret == wk.Secret {
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
		cfg.ProduceTimeout = 5 * time.Second
	}
	if cfg.MaxBodyBytesInFlight <= 0 {
		cfg.MaxBodyBytesInFlight = 64 << 20
	}
	// One request of the largest kind, gzipped, must fit.
	maxWire := wireLimit(max(cfg.Limits.MaxBatchBytes, cfg.Limits.MaxEventBytes, maxDecideBody, maxConfigBody))
	cfg.MaxBodyBytesInFlight = max(cfg.MaxBodyBytesInFlight, 2*int64(maxWire))
	if cfg.BodyWait <= 0 {
		cfg.BodyWait = bodyWaitDefault
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
	var err error
	if s.openapiDoc, err = openapiJSON(); err != nil {
		return nil, err
	}
	if s.script, err = web.TailorJS(); err != nil {
		return nil, err
	}
	s.routes = make(map[string]*route)
	for _, r := range routes() {
		if r.serve != nil {
			s.routes[r.path] = r
		}
	}
	s.decisions = cfg.Decisions
	s.decideKeys = append(append([]Key(nil), cfg.ReadKeys...), cfg.DecideKeys...)
	s.decideScratch.New = func() any { return &decideScratch{out: make([]byte, 0, 4096)} }
	s.parsers.New = func() any {
		p := event.NewParser(cfg.Limits)
		p.Stamp = true
		return p
	}
	inFlight := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tailor_http_body_bytes_in_flight",
		Help: "Bytes of request bodies reserved by the requests being read and handled; at most the configured budget.",
	})
	collected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_collect_events_total",
		Help: "Events the collect API received, by verdict: stored, or refused (invalid, answered with the reason).",
	}, []string{"verdict"})
	s.accepted, s.refused = collected.WithLabelValues("stored"), collected.WithLabelValues("refused")
	s.bodies = newBudget(cfg.MaxBodyBytesInFlight, inFlight)
	s.limits = newLimiters(cfg.RateLimits, reg)
	reg.MustRegister(s.latency, inFlight, collected)
	s.srv = &fasthttp.Server{
		Handler: s.Handler(),
		Name:    "tailor",
		// Handlers read bodies through readBody, which bounds each by its
		// endpoint's limit and all of them together by the body budget.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		MaxRequestBodySize:           maxWire,
		ReadTimeout:                  30 * time.Second,
		WriteTimeout:                 30 * time.Second,
		IdleTimeout:                  2 * time.Minute,
		NoDefaultContentType:         true,
		// Requests fasthttp itself rejects get JSON errors too.
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			writeError(ctx, fasthttp.StatusBadRequest, "", "malformed HTTP request: "+err.Error())
		},
	}
	return s, nil
}

// Serve serves HTTP on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Drain marks the server as shutting down: /readyz answers 503 from now
// on, so that load balancers stop sending requests before Shutdown.
func (s *Server) Drain() { s.draining.Store(true) }

// Shutdown stops accepting connections and waits for open requests.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.ShutdownWithContext(ctx) }

// Handler returns the request router.
func (s *Server) Handler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		route := s.route(ctx)
		finishBody(ctx)
		code := ctx.Response.StatusCode()
		s.latency.WithLabelValues(route, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
	}
}

// Readiness is the body of /readyz. Its status is 200 when the instance
// can serve reads (Ready: every assigned partition has applied its
// backlog), whatever Collect says, since a load balancer must keep
// sending reads to it; Collect says whether the last produce of collected
// events succeeded (a broker outage makes it false until one succeeds
// again), with since when and the error.
type Readiness struct {
	Ready        bool   `json:"ready"`
	Status       string `json:"status"`
	Serve        bool   `json:"serve"`
	Collect      bool   `json:"collect"`
	CollectSince string `json:"collect_since,omitempty"`
	CollectError string `json:"collect_error,omitempty"`
	Error        string `json:"error,omitempty"`
}

func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	r := Readiness{Ready: s.profiles.Ready(), Collect: true}
	r.Serve = r.Ready
	if h, ok := s.events.(producerHealth); ok {
		var since time.Time
		var err error
		r.Collect, since, err = h.Health()
		r.CollectSince = since.UTC().Format(time.RFC3339)
		if !r.Collect && err != nil {
			r.CollectError = err.Error()
		}
	}
	if s.draining.Load() {
		r.Ready, r.Serve = false, false
		r.Status, r.Error = "shutting down", "the instance is shutting down"
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, r)
		return
	}
	if !r.Ready {
		r.Status, r.Error = "catching up", "not every assigned partition has applied its backlog yet"
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, r)
		return
	}
	r.Status = "ready"
	writeJSON(ctx, fasthttp.StatusOK, r)
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Success bool `json:"success"`
	// Code is a stable word for the kind of error (invalid_event,
	// too_large, unauthorized, unavailable, ...) and Message says what
	// is wrong: the pair Segment's SDKs log.
	Code    string `json:"code"`
	Message string `json:"message"`
	// Error repeats Message, for the clients written before Code and
	// Message were added.
	Error string `json:"error"`
	// Field is the path of the offending field, when one is to blame.
	Field string `json:"field,omitempty"`
	// Errors lists every problem, when there are several (a rejected
	// configuration).
	Errors []string `json:"errors,omitempty"`
}

// writeError answers an error with the code its status implies.
func writeError(ctx *fasthttp.RequestCtx, status int, field, msg string) {
	writeErrorCode(ctx, status, statusCode(status), field, msg)
}

// writeErrorCode answers an error. A 503 tells the client when to try
// again (Retry-After, 1 s unless the handler set it).
func writeErrorCode(ctx *fasthttp.RequestCtx, status int, code, field, msg string) {
	if status == fasthttp.StatusServiceUnavailable && len(ctx.Response.Header.Peek(fasthttp.HeaderRetryAfter)) == 0 {
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
	}
	writeJSON(ctx, status, ErrorBody{Code: code, Message: msg, Error: msg, Field: field})
}

// statusCode is the error code of an answer with HTTP status status.
func statusCode(status int) string {
	switch status {
	case fasthttp.StatusBadRequest:
		return "bad_request"
	case fasthttp.StatusUnauthorized:
		return "unauthorized"
	case fasthttp.StatusForbidden:
		return "forbidden"
	case fasthttp.StatusNotFound:
		return "not_found"
	case fasthttp.StatusMethodNotAllowed:
		return "method_not_allowed"
	case fasthttp.StatusRequestEntityTooLarge:
		return "too_large"
	case fasthttp.StatusTooManyRequests:
		return "too_many_requests"
	case fasthttp.StatusServiceUnavailable:
		return "unavailable"
	}
	if status >= 500 {
		return "internal_error"
	}
	return "error"
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
// the request carried one) is among keys; how says where to send it. It
// returns the label of the key that matched.
func checkKey(ctx *fasthttp.RequestCtx, key string, present bool, keys []Key, what, how string) (label string, ok bool) {
	if !present || key == "" {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Basic realm="tailor"`)
		writeError(ctx, fasthttp.StatusUnauthorized, "", "missing "+what+": send it as "+how)
		return "", false
	}
	if label, ok = validKey(key, keys); !ok {
		writeError(ctx, fasthttp.StatusUnauthorized, "", "invalid "+what)
	}
	return label, ok
}

// validKey returns the label of the key among keys that key is. It
// compares with every key in constant time, so that timing reveals
// neither a key nor which one matched.
func validKey(key string, keys []Key) (label string, ok bool) {
	match := -1
	for i, k := range keys {
		eq := subtle.ConstantTimeCompare([]byte(key), []byte(k.Secret))
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 || key == "" {
		return "", false
	}
	return keys[match].Label, true
}

// readAllowed checks a read endpoint's method and key, answering the
// error when it fails.
func (s *Server) readAllowed(ctx *fasthttp.RequestCtx) bool {
	if !ctx.IsGet() && !ctx.IsHead() {
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "", "use GET")
		return false
	}
	user, ok := basicUser(ctx)
	_, ok = checkKey(ctx, user, ok, s.cfg.ReadKeys, "read key", "the Basic auth user name or a Bearer token")
	return ok
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
		s.markRead(ctx, key)
		writeError(ctx, fasthttp.StatusNotFound, "", fmt.Sprintf("no profile with key %q", key))
	case err != nil:
		s.log.Warn("profile read failed", "key", key, "err", err)
		writeError(ctx, fasthttp.StatusServiceUnavailable, "", err.Error())
	default:
		s.markRead(ctx, key)
		writeJSON(ctx, fasthttp.StatusOK, v)
	}
}
