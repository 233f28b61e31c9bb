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
store: {dedup_horizon: 7d, memtable_size: 8MB}
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
		{"source", cfg.Source, file},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestSampleIsDefault(t *testing.T) {
	cfg, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source != "sample" || len(cfg.Kafka.Brokers) != 0 || cfg.HTTP.WriteKeys[0] != "dev-write-key" || cfg.Kafka.Partitions != 12 {
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
	for in, want := range map[string]time.Duration{"90s": 90 * time.Second, "1d": 24 * time.Hour, "2d3h": 51 * time.Hour, "15m": 15 * time.Minute} {
		if got, err := ParseDuration(in); got != want || err != nil {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]int64{"512KB": 512 << 10, "16mb": 16 << 20, "1GB": 1 << 30, "100": 100} {
		var b ByteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("ByteSize(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
}
