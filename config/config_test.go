package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, args []string, env map[string]string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l := NewLoader(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return l.Load(func(k string) string { return env[k] })
}

func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tailor.yaml")
	os.WriteFile(file, []byte(`
data_dir: from-file
http: {addr: "127.0.0.1:1", write_keys: [w], read_keys: [r]}
kafka: {partitions: 3, group: file-group, brokers: [file:9092]}
store: {dedup_horizon: 7d, memtable_size: 8MB, retention: 400d}
`), 0o644)
	cfg, err := load(t, []string{"--config", file, "--partitions", "5"}, map[string]string{
		"TAILOR_PARTITIONS": "4", "TAILOR_GROUP": "env-group", "TAILOR_BROKERS": "a:1, b:2",
	})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"file value", cfg.DataDir, "from-file"},
		{"default kept", cfg.Kafka.TopicPrefix, "tailor."},
		{"env over file", cfg.Kafka.Group, "env-group"},
		{"flag over env", cfg.Kafka.Partitions, 5},
		{"list from env", strings.Join(cfg.Kafka.Brokers, ";"), "a:1;b:2"},
		{"days", time.Duration(cfg.Store.DedupHorizon), 7 * 24 * time.Hour},
		{"size", int64(cfg.Store.MemTableSize), int64(8 << 20)},
		{"retention", time.Duration(cfg.Store.Retention), 400 * 24 * time.Hour},
		{"retention off by default", time.Duration(Default().Store.Retention), time.Duration(0)},
		{"source", cfg.Source, file},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestPhoneRegion: the phone region is read from each place an option
// is, empty by default.
func TestPhoneRegion(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tailor.yaml")
	os.WriteFile(file, []byte("http: {write_keys: [w], read_keys: [r]}\ntraits: {phone_region: FR}\n"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"default", nil, nil, ""},
		{"file", []string{"--config", file}, nil, "FR"},
		{"env", []string{"--config", file}, map[string]string{"TAILOR_PHONE_REGION": "US"}, "US"},
		{"flag", []string{"--config", file, "--phone-region", "GB"}, map[string]string{"TAILOR_PHONE_REGION": "US"}, "GB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := load(t, tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Traits.PhoneRegion != tc.want {
				t.Errorf("phone region %q, want %q", cfg.Traits.PhoneRegion, tc.want)
			}
		})
	}
}

func TestSampleIsDefault(t *testing.T) {
	cfg, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source != "sample" || len(cfg.Kafka.Brokers) != 0 || cfg.HTTP.WriteKeys[0].Secret != "dev-write-key" || cfg.Kafka.Partitions != 12 {
		t.Errorf("sample config: %+v", cfg)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	n := 0
	write := func(s string) string {
		n++
		p := filepath.Join(dir, strconv.Itoa(n)+".yaml")
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		err  string
	}{
		{"unknown key", []string{"--config", write("kafka: {partitons: 3}")}, nil, "field partitons not found"},
		{"bad yaml", []string{"--config", write("kafka: [")}, nil, "yaml"},
		{"missing file", []string{"--config", filepath.Join(dir, "none.yaml")}, nil, "no such file"},
		{"bad int flag", []string{"--partitions", "many"}, nil, `--partitions "many": not an integer`},
		{"bad env duration", nil, map[string]string{"TAILOR_DEDUP_HORIZON": "soon"}, `TAILOR_DEDUP_HORIZON="soon": invalid duration`},
		{"zero partitions", []string{"--partitions", "0"}, nil, "kafka.partitions is 0"},
		{"same key", []string{"--read-keys", "dev-write-key"}, nil, "also a write key"},
		{"sasl", []string{"--sasl-mechanism", "GSSAPI"}, nil, `kafka.sasl.mechanism "GSSAPI"`},
		{"bad size", []string{"--memtable-size", "lots"}, nil, "invalid size"},
		{"bad window", []string{"--config", write("aggregates:\n  a: {event: x, fn: count, window: 2y}")}, nil, `line 2, column 36: invalid duration "2y": unknown unit`},
		{"negative window", []string{"--config", write("aggregates:\n  a: {event: x, fn: count, window: -2w}")}, nil, `invalid duration "-2w"`},
		{"unknown phone region", []string{"--phone-region", "XX"}, nil, `traits.phone_region is "XX", want a region code`},
		{"phone region in lower case", nil, map[string]string{"TAILOR_PHONE_REGION": "gb"}, `traits.phone_region is "gb"`},
		{"retention too short", []string{"--retention", "30m"}, nil, "store.retention is 30m0s, want 0 (keep for ever) or at least 1h0m0s"},
		{"retention too short in the file", []string{"--config", write("store: {retention: 59s}")}, nil, "store.retention is 59s, want"},
		{"negative retention", nil, map[string]string{"TAILOR_RETENTION": "-400d"}, `TAILOR_RETENTION="-400d": invalid duration`},
		{"phone region from the file", []string{"--config", write("traits: {phone_region: England}")}, nil, `traits.phone_region is "England"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.args, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

func TestValues(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"90s", 90 * time.Second},
		{"15m", 15 * time.Minute},
		{"1d", day},
		{"2d3h", 51 * time.Hour},
		{"2w", 14 * day},
		{"1w3d", 10 * day},
		{"1.5h", 90 * time.Minute},
		{"0", 0},
	} {
		if got, err := ParseDuration(tc.in); got != tc.want || err != nil {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for in, want := range map[string]int64{"512KB": 512 << 10, "16mb": 16 << 20, "1GB": 1 << 30, "100": 100} {
		var b ByteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("ByteSize(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
}

// TestWindowWeeks checks that a window written in weeks, as docs/rules.md and
// the sample config's comment write it, is read.
func TestWindowWeeks(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tailor.yaml")
	os.WriteFile(file, []byte("http: {write_keys: [w], read_keys: [r]}\naggregates:\n  views_2w: {event: Product Viewed, fn: count, window: 2w}\n  views_1w3d: {event: Product Viewed, fn: count, window: 1w3d}\n"), 0o644)
	cfg, err := load(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]time.Duration{}
	for name, a := range cfg.Aggregates {
		got[name] = time.Duration(a.Window)
	}
	if got["views_2w"] != 14*24*time.Hour || got["views_1w3d"] != 10*24*time.Hour {
		t.Errorf("windows %v, want 336h and 240h", got)
	}
}

// FuzzDuration checks that any configured duration is either refused or
// read back the same from how it is written.
func FuzzDuration(f *testing.F) {
	for _, s := range []string{"2w", "1d12h", "90s", "1.5h", "soon", "-1h", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var d Duration
		if d.Set(s) != nil {
			return
		}
		var back Duration
		if err := back.Set(d.String()); err != nil || back != d {
			t.Fatalf("%q read as %v, written %q, read back as %v, %v", s, time.Duration(d), d.String(), time.Duration(back), err)
		}
	})
}

// TestAggregateProperty checks that an aggregate's property may be one
// dotted path or a list of them, and that an unknown field of an
// aggregate is still refused.
func TestAggregateProperty(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want, err string
	}{
		{"one", "{event: E, fn: sum, property: total}", "total", ""},
		{"dotted", "{event: E, fn: sum, property: order.total}", "order.total", ""},
		{"list", "{event: E, fn: sum, property: [revenue, total]}", "revenue,total", ""},
		{"block list", "\n    event: E\n    fn: sum\n    property:\n      - revenue\n      - total", "revenue,total", ""},
		{"unknown field", "{event: E, fn: sum, propery: total}", "", "line 3: field propery not found"},
		{"unknown field with list", "{event: E, fn: sum, property: [a], windw: 1h}", "", "field windw not found"},
		{"list of lists", "{event: E, fn: sum, property: [[a]]}", "", "property"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "tailor.yaml")
			os.WriteFile(file, []byte("http: {write_keys: [w], read_keys: [r]}\naggregates:\n  a: "+tc.yaml+"\n"), 0o644)
			cfg, err := load(t, []string{"--config", file}, nil)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Aggregates["a"].Property; got != tc.want {
				t.Errorf("property %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
		err  bool
	}{
		{"100/s", Rate{100, 100}, false},
		{"100/s burst 500", Rate{100, 500}, false},
		{"6000/m", Rate{100, 100}, false},
		{"1/h", Rate{1.0 / 3600, 1}, false},
		{"0.5/s BURST 3", Rate{0.5, 3}, false},
		{"off", Rate{}, false},
		{"0", Rate{}, false},
		{"100", Rate{}, true},
		{"100/d", Rate{}, true},
		{"-1/s", Rate{}, true},
		{"NaN/s", Rate{}, true},
		{"100/s burst 0", Rate{}, true},
		{"100/s burst", Rate{}, true},
		{"100/s 500", Rate{}, true},
	} {
		var r Rate
		err := r.Set(tc.in)
		if (err != nil) != tc.err || !tc.err && r != tc.want {
			t.Errorf("%q: %+v, %v; want %+v, error %v", tc.in, r, err, tc.want, tc.err)
		}
	}
	cfg, err := Parse([]byte("http: {write_keys: [w], read_keys: [r], rate_limits: {decide: 10/s burst 20, collect: off}}"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.HTTP.RateLimits; got.Decide != (Rate{10, 20}) || got.Collect != (Rate{}) || got.CollectKey != (Rate{}) {
		t.Errorf("rate limits %+v", got)
	}
	if _, err := Parse([]byte("http: {write_keys: [w], read_keys: [r], rate_limits: {exempt: [10.0.0.0/33]}}"), "test"); err == nil {
		t.Error("a bad exempt prefix was accepted")
	}
}

// FuzzRate checks that any configured rate is either refused or read
// back the same from how it is written.
func FuzzRate(f *testing.F) {
	for _, s := range []string{"100/s", "6000/m burst 5", "1/h", "off", "1e9/s burst 1000000000", "0.1/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var r Rate
		if r.Set(s) != nil {
			return
		}
		var back Rate
		if err := back.Set(r.String()); err != nil || back != r {
			t.Fatalf("%q read as %+v, written %q, read back as %+v, %v", s, r, r.String(), back, err)
		}
	})
}
