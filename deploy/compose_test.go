package deploy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"

	"github.com/tailorcdp/tailor/config"
)

// TestCompose loads deploy/compose/compose.yaml with the Compose
// specification's loader (schema validation included) and checks the
// deployment it describes: Apache Kafka in KRaft mode, three tailor
// instances each with its own volume and instance id, Prometheus scraping
// them all, Grafana provisioned with the dashboard.
func TestCompose(t *testing.T) {
	dir := filepath.Join("compose")
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  abs,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(abs, "compose.yaml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("tailor", true) })
	if err != nil {
		t.Fatalf("load compose.yaml: %v", err)
	}
	kafka, ok := project.Services["kafka"]
	if !ok {
		t.Fatal("no kafka service")
	}
	if roles := kafka.Environment["KAFKA_PROCESS_ROLES"]; roles == nil || !strings.Contains(*roles, "controller") {
		t.Errorf("kafka is not a KRaft controller: KAFKA_PROCESS_ROLES %v", roles)
	}
	if kafka.HealthCheck == nil {
		t.Errorf("kafka has no health check for tailor to wait on")
	}
	known := make(map[string]bool)
	for _, name := range config.EnvNames() {
		known[name] = true
	}
	ids, volumes := map[string]bool{}, map[string]bool{}
	var targets []string
	for _, name := range []string{"tailor-1", "tailor-2", "tailor-3"} {
		s, ok := project.Services[name]
		if !ok {
			t.Errorf("no %s service", name)
			continue
		}
		env := func(k string) string {
			if v := s.Environment[k]; v != nil {
				return *v
			}
			return ""
		}
		for k := range s.Environment {
			if strings.HasPrefix(k, "TAILOR_") && !known[k] {
				t.Errorf("%s: %s is not an option tailor reads", name, k)
			}
		}
		id := env("TAILOR_INSTANCE_ID")
		if id == "" || ids[id] {
			t.Errorf("%s: instance id %q empty or shared", name, id)
		}
		ids[id] = true
		if env("TAILOR_BROKERS") != "kafka:9092" {
			t.Errorf("%s: TAILOR_BROKERS %q, want kafka:9092", name, env("TAILOR_BROKERS"))
		}
		if d, ok := s.DependsOn["kafka"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s does not wait for kafka to be healthy: %+v", name, s.DependsOn)
		}
		i := slices.IndexFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == "/data" })
		if i < 0 || s.Volumes[i].Type != types.VolumeTypeVolume || volumes[s.Volumes[i].Source] {
			t.Errorf("%s: no volume of its own at /data: %+v", name, s.Volumes)
		} else {
			volumes[s.Volumes[i].Source] = true
		}
		if s.Build == nil {
			t.Errorf("%s: no build", name)
		} else if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: Dockerfile: %v", name, err)
		}
		drain, _ := time.ParseDuration(env("TAILOR_SHUTDOWN_DRAIN"))
		bound := drain + time.Duration(config.Default().Shutdown.Timeout)
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= bound {
			t.Errorf("%s: stop_grace_period %v is not above the shutdown bound %s", name, s.StopGracePeriod, bound)
		}
		targets = append(targets, s.Hostname+":8080")
	}

	// Prometheus scrapes every instance.
	var prom struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &prom); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	var scraped []string
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			scraped = append(scraped, st.Targets...)
		}
	}
	for _, target := range targets {
		if !slices.Contains(scraped, target) {
			t.Errorf("prometheus.yml does not scrape %s (it scrapes %v)", target, scraped)
		}
	}
	// Grafana's provisioning and dashboards are mounted from the repository.
	g, ok := project.Services["grafana"]
	if !ok {
		t.Fatal("no grafana service")
	}
	for _, want := range []string{"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"} {
		i := slices.IndexFunc(g.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == want })
		if i < 0 {
			t.Errorf("grafana: nothing mounted at %s", want)
			continue
		}
		if _, err := os.Stat(g.Volumes[i].Source); err != nil {
			t.Errorf("grafana: %s: %v", want, err)
		}
	}
	if _, ok := project.Services["prometheus"]; !ok {
		t.Error("no prometheus service")
	}
}
