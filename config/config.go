package config

import (
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nyaruka/phonenumbers"
	"gopkg.in/yaml.v3"
)

// sample is the sample configuration used when no file is given: it runs
// everything on one machine with development keys.
//
//go:embed sample.yaml
var sample []byte

// Config is the whole configuration.
type Config struct {
	DataDir  string   `yaml:"data_dir"`
	HTTP     HTTP     `yaml:"http"`
	Kafka    Kafka    `yaml:"kafka"`
	Embedded Embedded `yaml:"embedded"`
	Store    Store    `yaml:"store"`
	Events   Events   `yaml:"events"`
	Log      Log      `yaml:"log"`
	Shutdown Shutdown `yaml:"shutdown"`
	// Aggregates are maintained per profile, by name.
	Aggregates map[string]Aggregate `yaml:"aggregates"`
	// Segments are named true/false rules over a profile.
	Segments map[string]string `yaml:"segments"`
	// RFMSegments adds the standard named RFM segments (champions, loyal,
	// ... lost) to Segments.
	RFMSegments bool `yaml:"rfm_segments"`
	// RFMHorizon limits RFM frequency and monetary value to the orders of
	// the last RFMHorizon (e.g. 365d), and the RFM population to customers
	// with an order in it; 0 counts all time.
	RFMHorizon Duration `yaml:"rfm_horizon"`
	// RFMRefresh is how often the segments reading RFM scores are
	// re-evaluated for every profile when the population's quintiles have
	// moved; 0 never (a profile's own events still re-evaluate them).
	RFMRefresh Duration `yaml:"rfm_refresh"`
	// Interests configures the category affinities; nil keeps the defaults.
	Interests *Interests `yaml:"interests"`
	// Products configures what is learnt about products for
	// recommendations; nil keeps the defaults.
	Products *Products `yaml:"products"`
	// Decide configures the decide endpoint.
	Decide Decide `yaml:"decide"`
	// Placements are the slots decide calls ask about, by name.
	Placements map[string]Placement `yaml:"placements"`
	// Offers compete for placements.
	Offers []Offer `yaml:"offers"`
	// Traits configures how traits are normalised as they are applied.
	Traits Traits `yaml:"traits"`
	// Privacy configures erasure.
	Privacy Privacy `yaml:"privacy"`
	// Outputs configures what the outputs carry (decision 0029).
	Outputs Outputs `yaml:"outputs"`
	// Destinations receive segment changes, by name (destinations.go).
	Destinations map[string]Destination `yaml:"destinations"`

	// Source says where the file part came from ("sample" or a path).
	Source string `yaml:"-"`
	// Clock, when set, replaces the wall clock for windows, since() and
	// recency; for tests and replays of old data, not for the file.
	Clock func() time.Time `yaml:"-"`
	// Reparse builds the configuration a new document gives, the way this
	// one was built (Loader.Parse: the same environment and flags); nil
	// means Parse.
	Reparse func(data []byte, source string) (*Config, error) `yaml:"-"`
}

// Parse builds a configuration from defaults and a YAML document alone.
// Problems with the document are errors wrapping ErrInvalid.
func Parse(data []byte, source string) (*Config, error) {
	l := &Loader{cfg: Default(), getenv: func(string) string { return "" }}
	return l.Parse(data, source)
}

// HTTP configures the HTTP server.
type HTTP struct {
	Addr string `yaml:"addr"`
	// WriteKeys are accepted by the collect API, ReadKeys by the profile,
	// segment, offer and decide APIs. Each key has a label (keys.go).
	WriteKeys Keys `yaml:"write_keys"`
	ReadKeys  Keys `yaml:"read_keys"`
	// DecideKeys are accepted by the decide endpoint only: unlike read
	// keys, they may ship in web pages and apps.
	DecideKeys Keys `yaml:"decide_keys"`
	// CORSOrigins may call the decide and collect endpoints from browsers
	// ("*": any). Default: none (browsers on other origins are refused).
	CORSOrigins []string `yaml:"cors_origins"`
	// AdminKeys are accepted by the admin API (PUT /v1/admin/config);
	// none turns it off. Their labels name who did what on the audit
	// topic.
	AdminKeys Keys `yaml:"admin_keys"`
	// Advertise is the address other instances send requests for this
	// instance's keys to; empty: the listening address (with the host
	// name when listening on every interface).
	Advertise string `yaml:"advertise"`
	// RateLimits bound the requests to collect and decide.
	RateLimits RateLimits `yaml:"rate_limits"`
	// ProxyHeader names the header a reverse proxy in front of tailor
	// writes the client's address in (X-Forwarded-For); empty: the
	// connection's address is the client's. Set it only when every
	// request comes through the proxy. ProxyHops is how many proxies
	// append to it: the client's address is the ProxyHops-th from the
	// right (default 1, the address the nearest proxy saw).
	ProxyHeader string `yaml:"proxy_header"`
	ProxyHops   int    `yaml:"proxy_hops"`
}

// RateLimits bound the requests to collect and decide per client address
// and per key, answering 429 with Retry-After beyond them (decision 0023).
// Calls with a read key (from the site's servers) are not limited.
type RateLimits struct {
	// Collect and Decide limit each client address (IPv6: each /64).
	Collect Rate `yaml:"collect"`
	Decide  Rate `yaml:"decide"`
	// CollectKey limits each write key, DecideKey each decide key: all
	// the clients using it together.
	CollectKey Rate `yaml:"collect_key"`
	DecideKey  Rate `yaml:"decide_key"`
	// Exempt lists the client addresses (CIDR prefixes, or "private" for
	// loopback, private and link-local addresses) never limited.
	Exempt []string `yaml:"exempt"`
}

// Traits configures trait normalisation (decision 0026).
type Traits struct {
	// PhoneRegion is the region (ISO 3166-1 alpha-2, e.g. GB) a phone
	// trait written without a country code is read in; empty: only
	// numbers written with + and their country code are normalised.
	PhoneRegion string `yaml:"phone_region"`
}

// Privacy configures erasure (DELETE /v1/profiles/{key}).
type Privacy struct {
	// SuppressErased drops every later event of an erased id, at collect
	// where the instance holds the id's partition, and in the consumer.
	SuppressErased bool `yaml:"suppress_erased"`
}

// Outputs configures the outputs: for now the segments topic; the
// destinations that follow take an Output each.
type Outputs struct {
	Segments Output `yaml:"segments"`
}

// Output configures one output.
type Output struct {
	// Purpose, when set, is the consent purpose (Segment's consent
	// categoryPreferences, e.g. Marketing) the output carries people's
	// data for: a record about a profile whose latest choice does not
	// grant it is not written. Empty: every profile's records are.
	Purpose string `yaml:"purpose"`
}

// Kafka configures the connection to Kafka and the topics.
type Kafka struct {
	Brokers        []string `yaml:"brokers"`
	Group          string   `yaml:"group"`
	InstanceID     string   `yaml:"instance_id"`
	SessionTimeout Duration `yaml:"session_timeout"`
	// StandbyReplicas is how many other instances keep a warm copy of
	// each partition's store from its changelog, so that a failover
	// serves in about a second rather than after a whole restore
	// (Kafka Streams' num.standby.replicas). Needs store.changelog.
	StandbyReplicas int `yaml:"standby_replicas"`
	// EventsRetention is how long a new events topic keeps its records
	// (0: for ever). State does not depend on it once the changelog
	// holds it; replays and backfills of past events reach back this far.
	EventsRetention Duration `yaml:"events_retention"`
	MaxPollRecords  int      `yaml:"max_poll_records"`
	TopicPrefix     string   `yaml:"topic_prefix"`
	Partitions      int      `yaml:"partitions"`
	Replication     int      `yaml:"replication"`
	ClientID        string   `yaml:"client_id"`
	TLS             TLS      `yaml:"tls"`
	SASL            SASL     `yaml:"sasl"`
}

// TLS configures TLS to the brokers.
type TLS struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// SASL configures SASL authentication to the brokers.
type SASL struct {
	Mechanism string `yaml:"mechanism"` // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// Embedded configures the in-process broker used when no brokers are set.
type Embedded struct {
	Port int `yaml:"port"`
}

// MinRetention is the shortest store.retention accepted: a shorter one
// is taken for a mistake of unit, deleting profiles between a visitor's
// pages.
const MinRetention = time.Hour

// Store configures the per-partition Badger stores.
type Store struct {
	MemTableSize   ByteSize `yaml:"memtable_size"`
	BlockCacheSize ByteSize `yaml:"block_cache_size"`
	CacheProfiles  int      `yaml:"cache_profiles"`
	SyncWrites     bool     `yaml:"sync_writes"`
	DedupHorizon   Duration `yaml:"dedup_horizon"`
	DedupIDs       int      `yaml:"dedup_ids"`
	// Retention deletes a profile with no event for that long (event
	// time of its last event against the clock), with exits from its
	// segments; 0 keeps profiles for ever (decision 0027).
	Retention Duration `yaml:"retention"`

	// VerifyChecksums verifies the stores' table checksums when a store
	// opens and block checksums as blocks are read (decision 0017).
	VerifyChecksums bool `yaml:"verify_checksums"`

	// Changelog writes every committed batch's store writes to the
	// changelog topic, in the batch's Kafka transaction, and restores a
	// partition store that is missing or damaged from it on assignment
	// (decision 0021).
	Changelog bool `yaml:"changelog"`
	// RestoreMemory bounds the state one restore from the changelog holds
	// in memory to write it sorted, straight into the store's tables;
	// a larger store is restored through the store's write path, several
	// times slower (state.Options.RestoreMemory).
	RestoreMemory ByteSize `yaml:"restore_memory"`
}

// Events configures event validation.
type Events struct {
	MaxFuture Duration `yaml:"max_future"`
	Oldest    Date     `yaml:"oldest"`
}

// Aggregate declares an aggregate kept in every profile: a function of
// the track events named Event (matching Where) over a sliding window of
// event time, or all time when Window is 0.
type Aggregate struct {
	Event string `yaml:"event"`
	Where string `yaml:"where"`
	Fn    string `yaml:"fn"`
	// Property is the property read, a dotted path; YAML may also give a
	// list of them, the first that an event has being read ([revenue,
	// total]), which Property holds separated by commas.
	Property string   `yaml:"property"`
	Window   Duration `yaml:"window"`
}

// UnmarshalYAML reads an aggregate, whose property may be a list.
func (a *Aggregate) UnmarshalYAML(n *yaml.Node) error {
	type plain Aggregate // without this method
	var list []string
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k, v := n.Content[i], n.Content[i+1]; k.Value == "property" && v.Kind == yaml.SequenceNode {
				if err := v.Decode(&list); err != nil {
					return fmt.Errorf("line %d: property: %w", v.Line, err)
				}
				// Decoded below without it.
				n = &yaml.Node{Kind: n.Kind, Tag: n.Tag, Line: n.Line, Column: n.Column,
					Content: append(slices.Clone(n.Content[:i]), n.Content[i+2:]...)}
				break
			}
		}
	}
	// Node.Decode does not refuse unknown fields as the file's decoder
	// does: check them here.
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			switch k := n.Content[i]; k.Value {
			case "event", "where", "fn", "property", "window":
			default:
				return fmt.Errorf("line %d: field %s not found in an aggregate (event, where, fn, property, window)", k.Line, k.Value)
			}
		}
	}
	if err := n.Decode((*plain)(a)); err != nil {
		return err
	}
	if list != nil {
		a.Property = strings.Join(list, ",")
	}
	return nil
}

// Interests configures the per-category affinity of each profile. Zero
// fields take the defaults.
type Interests struct {
	// Weights is what each track event adds to its category's score.
	Weights map[string]float64 `yaml:"weights"`
	// Property names the category in event properties (and products[]).
	Property string `yaml:"property"`
	// HalfLife is how fast interests fade.
	HalfLife Duration `yaml:"half_life"`
	// Max bounds the categories kept per profile.
	Max int `yaml:"max"`
}

// Products configures the product statistics behind recommendations.
// Zero fields take the defaults.
type Products struct {
	// Weights is what each track event adds to a product's popularity.
	Weights map[string]float64 `yaml:"weights"`
	// HalfLife is how fast popularity fades (trending).
	HalfLife Duration `yaml:"half_life"`
	// Max bounds the products kept per partition.
	Max int `yaml:"max"`
}

// Decide configures the decide endpoint.
type Decide struct {
	// ConsentPurpose, when set, must be granted (Segment consent
	// categoryPreferences) for personalised answers.
	ConsentPurpose string `yaml:"consent_purpose"`
	// IdentitySecret, when set, makes a decide call that names a userId
	// carry userHash, the hex HMAC-SHA256 of the userId under it,
	// computed by the site's backend; calls without it are answered as
	// for an unknown visitor (decision 0023).
	IdentitySecret string `yaml:"identity_secret"`
	// ReservationTTL is how long an answered capped offer counts against
	// its cap while its impression has not arrived.
	ReservationTTL Duration `yaml:"reservation_ttl"`
}

// Placement declares a slot of a page: offers compete for it, or it lists
// recommended products (kind recently_viewed, trending, bought_together).
type Placement struct {
	Kind          string  `yaml:"kind"`
	Arbitration   string  `yaml:"arbitration"`
	Count         int     `yaml:"count"`
	Fallback      string  `yaml:"fallback"`
	Control       float64 `yaml:"control"`
	Reward        string  `yaml:"reward"`
	ExcludeBought bool    `yaml:"exclude_bought"`
	ByInterest    bool    `yaml:"by_interest"`
}

// Offer declares an offer.
type Offer struct {
	ID         string      `yaml:"id"`
	Placements []string    `yaml:"placements"`
	When       string      `yaml:"when"`
	Priority   float64     `yaml:"priority"`
	Score      string      `yaml:"score"`
	Content    JSONContent `yaml:"content"`
	// Trusted lets tailor.js insert the content's html field as markup
	// (otherwise every field is shown as text); content must then be an
	// object whose html, if any, is a string.
	Trusted bool      `yaml:"trusted"`
	Start   time.Time `yaml:"start"`
	End     time.Time `yaml:"end"`
	Cap     struct {
		Impressions int      `yaml:"impressions"`
		Per         Duration `yaml:"per"`
	} `yaml:"cap"`
	Cooldown struct {
		After string   `yaml:"after"`
		For   Duration `yaml:"for"`
	} `yaml:"cooldown"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Shutdown bounds how an instance stops (docs/operations.md#shutdown).
type Shutdown struct {
	// Drain is how long /readyz answers 503 before the HTTP server stops,
	// so that load balancers take the instance out first.
	Drain Duration `yaml:"drain"`
	// Timeout bounds the rest: stopping the HTTP server, the consumer
	// (leaving the group) and the stores, the producer. Past it the
	// process exits with an error naming what did not finish.
	Timeout Duration `yaml:"timeout"`
}

// Default returns the built-in defaults (without the sample file).
func Default() Config {
	return Config{
		DataDir: "data",
		HTTP: HTTP{Addr: "127.0.0.1:8080", ProxyHops: 1, RateLimits: RateLimits{
			Collect: Rate{PerSecond: 100, Burst: 1000},
			Decide:  Rate{PerSecond: 50, Burst: 500},
			Exempt:  []string{"private"},
		}},
		Kafka: Kafka{
			Group:           "tailor",
			SessionTimeout:  Duration(45 * time.Second),
			EventsRetention: Duration(30 * 24 * time.Hour),
			MaxPollRecords:  50000,
			TopicPrefix:     "tailor.",
			Partitions:      12,
			Replication:     1,
			ClientID:        "tailor",
		},
		Embedded: Embedded{Port: 9092},
		Store: Store{
			MemTableSize:   16 << 20,
			BlockCacheSize: 16 << 20,
			CacheProfiles:  20000,
			DedupHorizon:   Duration(24 * time.Hour),
			DedupIDs:       1000,

			VerifyChecksums: true,
			Changelog:       true,
			RestoreMemory:   512 << 20,
		},
		Events: Events{
			MaxFuture: Duration(24 * time.Hour),
			Oldest:    Date(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)),
		},
		Log:        Log{Level: "info", Format: "text"},
		Shutdown:   Shutdown{Timeout: Duration(30 * time.Second)},
		Decide:     Decide{ReservationTTL: Duration(time.Minute)},
		RFMRefresh: Duration(time.Hour),
	}
}

type option struct {
	flag, env, yaml, usage string
	value                  flag.Value
}

func (c *Config) options() []option {
	return []option{
		{"data-dir", "TAILOR_DATA_DIR", "data_dir", "directory for the partition stores and the embedded broker's log", (*stringValue)(&c.DataDir)},
		{"http-addr", "TAILOR_HTTP_ADDR", "http.addr", "address of the HTTP API (collect, profiles, health, metrics)", (*stringValue)(&c.HTTP.Addr)},
		{"write-keys", "TAILOR_WRITE_KEYS", "http.write_keys", "comma-separated keys accepted by the collect API, each key or label:key", &c.HTTP.WriteKeys},
		{"read-keys", "TAILOR_READ_KEYS", "http.read_keys", "comma-separated keys accepted by the profile, segment, offer and decide APIs, each key or label:key", &c.HTTP.ReadKeys},
		{"decide-keys", "TAILOR_DECIDE_KEYS", "http.decide_keys", "comma-separated keys accepted by the decide API only (safe in web pages), each key or label:key", &c.HTTP.DecideKeys},
		{"advertise", "TAILOR_ADVERTISE", "http.advertise", "host:port other instances reach this one's HTTP API at, to send it requests for the keys it holds (default: the listening address)", (*stringValue)(&c.HTTP.Advertise)},
		{"admin-keys", "TAILOR_ADMIN_KEYS", "http.admin_keys", "comma-separated keys accepted by the admin API (config reload), each key or label:key (the label names the key on the audit topic); empty turns it off", &c.HTTP.AdminKeys},
		{"cors-origins", "TAILOR_CORS_ORIGINS", "http.cors_origins", "comma-separated origins allowed to call decide and collect from browsers (* for any; default none)", (*listValue)(&c.HTTP.CORSOrigins)},
		{"collect-rate", "TAILOR_COLLECT_RATE", "http.rate_limits.collect", "collect requests per client address: e.g. 100/s burst 1000, or off", &c.HTTP.RateLimits.Collect},
		{"decide-rate", "TAILOR_DECIDE_RATE", "http.rate_limits.decide", "decide requests per client address (calls with a read key are not limited)", &c.HTTP.RateLimits.Decide},
		{"collect-key-rate", "TAILOR_COLLECT_KEY_RATE", "http.rate_limits.collect_key", "collect requests per write key, all clients together (off: no limit)", &c.HTTP.RateLimits.CollectKey},
		{"decide-key-rate", "TAILOR_DECIDE_KEY_RATE", "http.rate_limits.decide_key", "decide requests per decide key, all clients together (off: no limit)", &c.HTTP.RateLimits.DecideKey},
		{"rate-limit-exempt", "TAILOR_RATE_LIMIT_EXEMPT", "http.rate_limits.exempt", "comma-separated client address prefixes never rate limited (CIDR, or private: loopback, private and link-local)", (*listValue)(&c.HTTP.RateLimits.Exempt)},
		{"proxy-header", "TAILOR_PROXY_HEADER", "http.proxy_header", "header a reverse proxy puts the client address in (e.g. X-Forwarded-For); only when every request comes through it", (*stringValue)(&c.HTTP.ProxyHeader)},
		{"proxy-hops", "TAILOR_PROXY_HOPS", "http.proxy_hops", "proxies appending to the proxy header: the client address is this many entries from its right", (*intValue)(&c.HTTP.ProxyHops)},
		{"identity-secret", "TAILOR_IDENTITY_SECRET", "decide.identity_secret", "secret of identity verification: decide calls naming a userId must carry userHash = hex HMAC-SHA256(secret, userId) (empty: off)", (*stringValue)(&c.Decide.IdentitySecret)},
		{"consent-purpose", "TAILOR_CONSENT_PURPOSE", "decide.consent_purpose", "consent purpose a visitor must have granted for personalised decisions (empty: none needed)", (*stringValue)(&c.Decide.ConsentPurpose)},
		{"segments-purpose", "TAILOR_SEGMENTS_PURPOSE", "outputs.segments.purpose", "consent purpose the segments topic carries changes for: a change of a profile whose latest choice does not grant it is not written (empty: every profile's)", (*stringValue)(&c.Outputs.Segments.Purpose)},
		{"reservation-ttl", "TAILOR_RESERVATION_TTL", "decide.reservation_ttl", "how long an answered capped offer counts against its cap before its impression arrives", (*Duration)(&c.Decide.ReservationTTL)},
		{"brokers", "TAILOR_BROKERS", "kafka.brokers", "comma-separated Kafka bootstrap brokers; empty runs the embedded broker", (*listValue)(&c.Kafka.Brokers)},
		{"group", "TAILOR_GROUP", "kafka.group", "consumer group of the engine's instances", (*stringValue)(&c.Kafka.Group)},
		{"instance-id", "TAILOR_INSTANCE_ID", "kafka.instance_id", "static group membership id, unique per instance: a restarted instance gets its partitions back at once instead of after the session timeout", (*stringValue)(&c.Kafka.InstanceID)},
		{"session-timeout", "TAILOR_SESSION_TIMEOUT", "kafka.session_timeout", "how long the group waits for a silent instance before moving its partitions", (*Duration)(&c.Kafka.SessionTimeout)},
		{"standby-replicas", "TAILOR_STANDBY_REPLICAS", "kafka.standby_replicas", "other instances that keep a warm copy of each partition's store from the changelog, for a failover in about a second (needs store.changelog)", (*intValue)(&c.Kafka.StandbyReplicas)},
		{"events-retention", "TAILOR_EVENTS_RETENTION", "kafka.events_retention", "how long a new events topic keeps its records (0s: for ever); state comes back from the changelog, replays of past events reach this far", (*Duration)(&c.Kafka.EventsRetention)},
		{"max-poll-records", "TAILOR_MAX_POLL_RECORDS", "kafka.max_poll_records", "records fetched per poll and applied per store transaction at most: larger batches commit less often", (*intValue)(&c.Kafka.MaxPollRecords)},
		{"topic-prefix", "TAILOR_TOPIC_PREFIX", "kafka.topic_prefix", "prefix of the topic names (events, changelog, segments, deadletter)", (*stringValue)(&c.Kafka.TopicPrefix)},
		{"partitions", "TAILOR_PARTITIONS", "kafka.partitions", "partitions of topics created at start (the unit of scale; changing it later is a migration)", (*intValue)(&c.Kafka.Partitions)},
		{"replication", "TAILOR_REPLICATION", "kafka.replication", "replication factor of topics created at start", (*intValue)(&c.Kafka.Replication)},
		{"client-id", "TAILOR_CLIENT_ID", "kafka.client_id", "Kafka client id", (*stringValue)(&c.Kafka.ClientID)},
		{"tls", "TAILOR_TLS", "kafka.tls.enabled", "connect to the brokers with TLS", (*boolValue)(&c.Kafka.TLS.Enabled)},
		{"tls-ca-file", "TAILOR_TLS_CA_FILE", "kafka.tls.ca_file", "PEM CA bundle to verify the brokers (default: system roots)", (*stringValue)(&c.Kafka.TLS.CAFile)},
		{"tls-cert-file", "TAILOR_TLS_CERT_FILE", "kafka.tls.cert_file", "PEM client certificate for mutual TLS", (*stringValue)(&c.Kafka.TLS.CertFile)},
		{"tls-key-file", "TAILOR_TLS_KEY_FILE", "kafka.tls.key_file", "PEM client key for mutual TLS", (*stringValue)(&c.Kafka.TLS.KeyFile)},
		{"tls-server-name", "TAILOR_TLS_SERVER_NAME", "kafka.tls.server_name", "server name to verify (default: the broker host)", (*stringValue)(&c.Kafka.TLS.ServerName)},
		{"sasl-mechanism", "TAILOR_SASL_MECHANISM", "kafka.sasl.mechanism", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: none)", (*stringValue)(&c.Kafka.SASL.Mechanism)},
		{"sasl-username", "TAILOR_SASL_USERNAME", "kafka.sasl.username", "SASL user name", (*stringValue)(&c.Kafka.SASL.Username)},
		{"sasl-password", "TAILOR_SASL_PASSWORD", "kafka.sasl.password", "SASL password", (*stringValue)(&c.Kafka.SASL.Password)},
		{"embedded-port", "TAILOR_EMBEDDED_PORT", "embedded.port", "port of the embedded broker on 127.0.0.1 (0: any free port)", (*intValue)(&c.Embedded.Port)},
		{"memtable-size", "TAILOR_MEMTABLE_SIZE", "store.memtable_size", "Badger memtable size per partition store (e.g. 16MB)", (*ByteSize)(&c.Store.MemTableSize)},
		{"block-cache-size", "TAILOR_BLOCK_CACHE_SIZE", "store.block_cache_size", "Badger block cache per partition store", (*ByteSize)(&c.Store.BlockCacheSize)},
		{"cache-profiles", "TAILOR_CACHE_PROFILES", "store.cache_profiles", "decoded profiles cached per partition", (*intValue)(&c.Store.CacheProfiles)},
		{"sync-writes", "TAILOR_SYNC_WRITES", "store.sync_writes", "fsync every store commit (survives power loss, slower)", (*boolValue)(&c.Store.SyncWrites)},
		{"changelog", "TAILOR_CHANGELOG", "store.changelog", "write every store change to the changelog topic, and restore a partition store that is missing or damaged from it", (*boolValue)(&c.Store.Changelog)},
		{"restore-memory", "TAILOR_RESTORE_MEMORY", "store.restore_memory", "memory one restore from the changelog may hold to write the store sorted, several times faster; a larger store is restored through the write path (0: always)", (*ByteSize)(&c.Store.RestoreMemory)},
		{"verify-checksums", "TAILOR_VERIFY_CHECKSUMS", "store.verify_checksums", "verify store checksums: every table when a partition store opens, every block read from disk (a damaged store is fenced rather than read wrong)", (*boolValue)(&c.Store.VerifyChecksums)},
		{"dedup-horizon", "TAILOR_DEDUP_HORIZON", "store.dedup_horizon", "how long (in receive time) a messageId is remembered to drop retried events (e.g. 24h, 7d)", (*Duration)(&c.Store.DedupHorizon)},
		{"retention", "TAILOR_RETENTION", "store.retention", "delete a profile with no event for this long, by the event time of its last event (e.g. 400d; 0: keep for ever)", (*Duration)(&c.Store.Retention)},
		{"dedup-ids", "TAILOR_DEDUP_IDS", "store.dedup_ids", "most recent messageIds remembered per profile within the horizon (0: no bound)", (*intValue)(&c.Store.DedupIDs)},
		{"suppress-erased", "TAILOR_SUPPRESS_ERASED", "privacy.suppress_erased", "drop every later event of an erased id (refused at collect, dropped by the consumer), for good", (*boolValue)(&c.Privacy.SuppressErased)},
		{"phone-region", "TAILOR_PHONE_REGION", "traits.phone_region", "region (e.g. GB) phone traits without a country code are read in, to store them in E.164 (empty: only numbers written with + and the country code)", (*stringValue)(&c.Traits.PhoneRegion)},
		{"max-future", "TAILOR_MAX_FUTURE", "events.max_future", "reject events timestamped further than this after their receive time", (*Duration)(&c.Events.MaxFuture)},
		{"oldest", "TAILOR_OLDEST", "events.oldest", "reject events timestamped before this date (YYYY-MM-DD)", (*Date)(&c.Events.Oldest)},
		{"log-level", "TAILOR_LOG_LEVEL", "log.level", "debug, info, warn or error", (*stringValue)(&c.Log.Level)},
		{"log-format", "TAILOR_LOG_FORMAT", "log.format", "text or json", (*stringValue)(&c.Log.Format)},
		{"shutdown-drain", "TAILOR_SHUTDOWN_DRAIN", "shutdown.drain", "how long /readyz answers 503 before the HTTP server stops, when a shutdown starts", (*Duration)(&c.Shutdown.Drain)},
		{"shutdown-timeout", "TAILOR_SHUTDOWN_TIMEOUT", "shutdown.timeout", "bound on the rest of a shutdown (HTTP, leaving the group, closing the stores); past it tailor exits non-zero naming what did not finish", (*Duration)(&c.Shutdown.Timeout)},
	}
}

// Loader parses a command's flags into a Config.
type Loader struct {
	fs       *flag.FlagSet
	path     string
	recorded []func() error
	cfg      Config
	getenv   func(string) string
}

// NewLoader registers every option (and -config) on fs.
func NewLoader(fs *flag.FlagSet) *Loader {
	l := &Loader{fs: fs, cfg: Default()}
	fs.StringVar(&l.path, "config", "", "YAML config file (env TAILOR_CONFIG; default: the built-in sample config)")
	for _, o := range l.cfg.options() {
		name := o.flag
		fs.Func(name, o.usage+" (env "+o.env+", yaml "+o.yaml+")", func(s string) error {
			// Applied after the file and the environment: see Load.
			l.recorded = append(l.recorded, func() error { return l.set(name, s) })
			return nil
		})
	}
	return l
}

func (l *Loader) set(flagName, s string) error {
	for _, o := range l.cfg.options() {
		if o.flag == flagName {
			if err := o.value.Set(s); err != nil {
				return fmt.Errorf("--%s %q: %w", flagName, s, err)
			}
			return nil
		}
	}
	return fmt.Errorf("unknown option %q", flagName)
}

// Load builds the configuration after fs.Parse: defaults, the file (or the
// sample), TAILOR_* variables from getenv, then the flags given.
func (l *Loader) Load(getenv func(string) string) (*Config, error) {
	l.getenv = getenv
	if l.path == "" {
		l.path = getenv("TAILOR_CONFIG")
	}
	data, source := sample, "sample"
	if l.path != "" {
		var err error
		if data, err = os.ReadFile(l.path); err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		source = l.path
	}
	return l.Parse(data, source)
}

// Path returns the config file named by --config or TAILOR_CONFIG, ""
// for the sample. Valid after Load.
func (l *Loader) Path() string { return l.path }

// Parse builds a configuration from a YAML document in place of the file,
// with the environment and flags Load was given: a reload. Problems with
// the document are errors wrapping ErrInvalid.
func (l *Loader) Parse(data []byte, source string) (*Config, error) {
	l.cfg = Default()
	if err := l.cfg.parseYAML(data, source); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	l.cfg.Source = source
	for _, o := range l.cfg.options() {
		if v := l.getenv(o.env); v != "" {
			if err := o.value.Set(v); err != nil {
				return nil, fmt.Errorf("%s=%q: %w", o.env, v, err)
			}
		}
	}
	for _, apply := range l.recorded {
		if err := apply(); err != nil {
			return nil, err
		}
	}
	if err := l.cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	cfg := l.cfg
	cfg.Reparse = l.Parse
	return &cfg, nil
}

// ErrInvalid is wrapped by the errors that reject a configuration for
// its content (rather than, say, an unreadable file).
var ErrInvalid = errors.New("invalid configuration")

func (c *Config) parseYAML(data []byte, source string) error {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", source, err)
	}
	return nil
}

// Validate checks the configuration as a whole.
func (c *Config) Validate() error {
	var errs []error
	if c.Kafka.EventsRetention < 0 {
		errs = append(errs, fmt.Errorf("kafka.events_retention is %s, want 0s (for ever) or more", time.Duration(c.Kafka.EventsRetention)))
	}
	if c.Kafka.StandbyReplicas < 0 {
		errs = append(errs, fmt.Errorf("kafka.standby_replicas is %d, want 0 or more", c.Kafka.StandbyReplicas))
	}
	if c.Kafka.StandbyReplicas > 0 && !c.Store.Changelog {
		errs = append(errs, fmt.Errorf("kafka.standby_replicas is %d but store.changelog is off: standby replicas are kept from the changelog", c.Kafka.StandbyReplicas))
	}
	if c.Shutdown.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown.timeout is %s, want more than 0s", time.Duration(c.Shutdown.Timeout)))
	}
	if c.Shutdown.Drain < 0 {
		errs = append(errs, fmt.Errorf("shutdown.drain is %s, want 0s or more", time.Duration(c.Shutdown.Drain)))
	}
	if c.Kafka.Partitions < 1 {
		errs = append(errs, fmt.Errorf("kafka.partitions is %d, want at least 1", c.Kafka.Partitions))
	}
	if c.Kafka.Replication < 1 {
		errs = append(errs, fmt.Errorf("kafka.replication is %d, want at least 1", c.Kafka.Replication))
	}
	if len(c.HTTP.WriteKeys) == 0 {
		errs = append(errs, errors.New("http.write_keys is empty: the collect API needs at least one write key"))
	}
	if len(c.HTTP.ReadKeys) == 0 {
		errs = append(errs, errors.New("http.read_keys is empty: the profile API needs at least one read key"))
	}
	h := &c.HTTP
	errs = append(errs, validateKeys([]namedKeys{
		{"http.write_keys", h.WriteKeys}, {"http.read_keys", h.ReadKeys}, {"http.decide_keys", h.DecideKeys}, {"http.admin_keys", h.AdminKeys},
	})...)
	// Keys are named by their labels: an error may be logged or answered.
	for _, k := range h.ReadKeys {
		if h.WriteKeys.Contains(k.Secret) {
			errs = append(errs, fmt.Errorf("read key %s is also a write key: they must differ", k.Label))
		}
	}
	for _, k := range h.DecideKeys {
		if h.ReadKeys.Contains(k.Secret) {
			errs = append(errs, fmt.Errorf("decide key %s is also a read key: decide keys ship in web pages, read keys must not", k.Label))
		}
	}
	for _, k := range h.AdminKeys {
		if h.WriteKeys.Contains(k.Secret) || h.ReadKeys.Contains(k.Secret) || h.DecideKeys.Contains(k.Secret) {
			errs = append(errs, fmt.Errorf("admin key %s is also a write, read or decide key: admin keys must be kept apart", k.Label))
		}
	}
	switch strings.ToUpper(c.Kafka.SASL.Mechanism) {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		errs = append(errs, fmt.Errorf("kafka.sasl.mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.Kafka.SASL.Mechanism))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q: want debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: want text or json", c.Log.Format))
	}
	if c.Store.MemTableSize < 4<<20 {
		errs = append(errs, fmt.Errorf("store.memtable_size %s: want at least 4MB (one event may change up to about 400 KB of state)", &c.Store.MemTableSize))
	}
	if i := c.Interests; i != nil && (time.Duration(i.HalfLife) < 0 || i.Max < 0) {
		errs = append(errs, fmt.Errorf("interests: half_life and max must not be negative"))
	}
	if r := c.Traits.PhoneRegion; r != "" && !phonenumbers.GetSupportedRegions()[r] {
		errs = append(errs, fmt.Errorf("traits.phone_region is %q, want a region code phone numbers are known for, in capitals (e.g. GB, US, DE), or empty", r))
	}
	if c.RFMHorizon < 0 || c.RFMRefresh < 0 {
		errs = append(errs, fmt.Errorf("rfm_horizon %s and rfm_refresh %s must not be negative", time.Duration(c.RFMHorizon), time.Duration(c.RFMRefresh)))
	}
	for _, p := range c.HTTP.RateLimits.Exempt {
		if _, err := netip.ParsePrefix(p); err != nil && p != "private" {
			errs = append(errs, fmt.Errorf("http.rate_limits.exempt %q: want a CIDR prefix (203.0.113.0/24) or private", p))
		}
	}
	if c.HTTP.ProxyHops < 1 {
		errs = append(errs, fmt.Errorf("http.proxy_hops is %d, want at least 1", c.HTTP.ProxyHops))
	}
	if r := time.Duration(c.Store.Retention); r != 0 && r < MinRetention {
		least := Duration(MinRetention)
		errs = append(errs, fmt.Errorf("store.retention is %s, want 0 (keep for ever) or at least %s", &c.Store.Retention, &least))
	}
	if p := c.Outputs.Segments.Purpose; p != strings.TrimSpace(p) {
		errs = append(errs, fmt.Errorf("outputs.segments.purpose %q has spaces around it: consent purposes are matched exactly", p))
	}
	errs = append(errs, validateDestinations(c.Destinations)...)
	if c.Store.CacheProfiles < 1 {
		errs = append(errs, fmt.Errorf("store.cache_profiles is %d, want at least 1", c.Store.CacheProfiles))
	}
	return errors.Join(errs...)
}

// FlagNames returns the flag names of the shared options, -config included.
func FlagNames() []string {
	names := []string{"config"}
	var c Config
	for _, o := range c.options() {
		names = append(names, o.flag)
	}
	return names
}

// EnvNames returns the environment variables of the shared options,
// TAILOR_CONFIG included.
func EnvNames() []string {
	names := []string{"TAILOR_CONFIG"}
	var c Config
	for _, o := range c.options() {
		names = append(names, o.env)
	}
	return names
}

// PrintOptions writes the table of options (flag, environment variable,
// YAML key, default, meaning) for --help.
func PrintOptions(w io.Writer) {
	d := Default()
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  FLAG\tENVIRONMENT\tYAML\tDEFAULT\tMEANING")
	fmt.Fprintln(tw, "  --config\tTAILOR_CONFIG\t\t(sample)\tYAML config file")
	for _, o := range d.options() {
		def := o.value.String()
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(tw, "  --%s\t%s\t%s\t%s\t%s\n", o.flag, o.env, o.yaml, def, o.usage)
	}
	tw.Flush()
}
