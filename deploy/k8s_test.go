package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
)

// manifests are the objects of deploy/k8s, decoded strictly: a field the
// API type lacks (a typo, a wrong level) fails.
type manifests struct {
	configMaps   []corev1.ConfigMap
	secrets      []corev1.Secret
	services     []corev1.Service
	statefulSets []appsv1.StatefulSet
	pdbs         []policyv1.PodDisruptionBudget
	files        []string // the files holding API objects
}

func readManifests(t *testing.T) manifests {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests in k8s/: %v", err)
	}
	var m manifests
	for _, path := range paths {
		if filepath.Base(path) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		m.files = append(m.files, filepath.Base(path))
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			if err := m.add(doc); err != nil {
				t.Errorf("%s, document %d: %v", path, i+1, err)
			}
		}
	}
	return m
}

// add decodes one document into the type its kind names.
func (m *manifests) add(doc []byte) error {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return err
	}
	strict := func(v any) error { return yaml.UnmarshalStrict(doc, v) }
	switch head.APIVersion + " " + head.Kind {
	case "v1 ConfigMap":
		var v corev1.ConfigMap
		m.configMaps = append(m.configMaps, v)
		return strict(&m.configMaps[len(m.configMaps)-1])
	case "v1 Secret":
		m.secrets = append(m.secrets, corev1.Secret{})
		return strict(&m.secrets[len(m.secrets)-1])
	case "v1 Service":
		m.services = append(m.services, corev1.Service{})
		return strict(&m.services[len(m.services)-1])
	case "apps/v1 StatefulSet":
		m.statefulSets = append(m.statefulSets, appsv1.StatefulSet{})
		return strict(&m.statefulSets[len(m.statefulSets)-1])
	case "policy/v1 PodDisruptionBudget":
		m.pdbs = append(m.pdbs, policyv1.PodDisruptionBudget{})
		return strict(&m.pdbs[len(m.pdbs)-1])
	}
	return fmt.Errorf("unexpected object %s %s", head.APIVersion, head.Kind)
}

func envOf(c corev1.Container) map[string]corev1.EnvVar {
	out := make(map[string]corev1.EnvVar)
	for _, e := range c.Env {
		out[e.Name] = e
	}
	return out
}

func selects(sel map[string]string, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// TestKubernetesManifests decodes deploy/k8s strictly and checks what a
// deployment of tailor needs of them.
func TestKubernetesManifests(t *testing.T) {
	m := readManifests(t)
	if len(m.statefulSets) != 1 || len(m.configMaps) != 1 || len(m.pdbs) != 1 || len(m.services) != 2 {
		t.Fatalf("want 1 StatefulSet, 1 ConfigMap, 1 PodDisruptionBudget, 2 Services; got %d, %d, %d, %d",
			len(m.statefulSets), len(m.configMaps), len(m.pdbs), len(m.services))
	}
	ss := m.statefulSets[0]
	pod := ss.Spec.Template
	if !selects(ss.Spec.Selector.MatchLabels, pod.Labels) {
		t.Errorf("the StatefulSet's selector %v does not select its pods %v", ss.Spec.Selector.MatchLabels, pod.Labels)
	}
	// A persistent volume per pod, mounted as the data directory.
	if len(ss.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("want one volume claim template, got %d", len(ss.Spec.VolumeClaimTemplates))
	}
	claim := ss.Spec.VolumeClaimTemplates[0].Name
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	env := envOf(c)
	dataDir := env["TAILOR_DATA_DIR"].Value
	if !slices.ContainsFunc(c.VolumeMounts, func(v corev1.VolumeMount) bool { return v.Name == claim && v.MountPath == dataDir }) {
		t.Errorf("the volume claim %q is not mounted at TAILOR_DATA_DIR %q: %+v", claim, dataDir, c.VolumeMounts)
	}
	// The instance id is the pod name.
	if f := env["POD_NAME"].ValueFrom; f == nil || f.FieldRef == nil || f.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("POD_NAME is not the pod's metadata.name: %+v", env["POD_NAME"])
	}
	if env["TAILOR_INSTANCE_ID"].Value != "$(POD_NAME)" {
		t.Errorf("TAILOR_INSTANCE_ID is %q, want $(POD_NAME)", env["TAILOR_INSTANCE_ID"].Value)
	}
	// The headless Service gives each pod the name it advertises.
	var headless, client *corev1.Service
	for i := range m.services {
		s := &m.services[i]
		if !selects(s.Spec.Selector, pod.Labels) {
			t.Errorf("Service %s does not select the pods", s.Name)
		}
		if s.Spec.ClusterIP == corev1.ClusterIPNone {
			headless = s
		} else {
			client = s
		}
	}
	if headless == nil || client == nil {
		t.Fatalf("want a headless Service and a client Service")
	}
	if ss.Spec.ServiceName != headless.Name {
		t.Errorf("serviceName %q, want the headless Service %q", ss.Spec.ServiceName, headless.Name)
	}
	if adv := env["TAILOR_ADVERTISE"].Value; !strings.HasPrefix(adv, "$(POD_NAME)."+headless.Name+".") {
		t.Errorf("TAILOR_ADVERTISE %q is not the pod's name under the headless Service", adv)
	}
	// Readiness is /readyz; resources are requested.
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe %+v, want GET /readyz", p)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want CPU and memory requests and a memory limit", c.Resources)
	}
	if !selects(m.pdbs[0].Spec.Selector.MatchLabels, pod.Labels) {
		t.Errorf("the PodDisruptionBudget does not select the pods")
	}

	// The ConfigMap's config is valid (with the keys the Secret gives),
	// keeps a standby replica, and its shutdown fits the grace period.
	doc := []byte(m.configMaps[0].Data["tailor.yaml"])
	cfg, _, err := engine.Check(append(doc, "http:\n  write_keys: [w]\n  read_keys: [r]\n"...), "configmap.yaml", nil)
	if err != nil {
		t.Fatalf("the ConfigMap's tailor.yaml: %v", err)
	}
	if cfg.Kafka.StandbyReplicas != 1 {
		t.Errorf("kafka.standby_replicas is %d, want 1", cfg.Kafka.StandbyReplicas)
	}
	bound := time.Duration(cfg.Shutdown.Drain + cfg.Shutdown.Timeout)
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= bound {
		t.Errorf("terminationGracePeriodSeconds %v is not above shutdown.drain + shutdown.timeout (%s)", g, bound)
	}
	if env["TAILOR_CONFIG"].Value == "" || !slices.ContainsFunc(c.VolumeMounts, func(v corev1.VolumeMount) bool {
		return strings.HasPrefix(env["TAILOR_CONFIG"].Value, v.MountPath+"/")
	}) {
		t.Errorf("TAILOR_CONFIG %q is not on a mounted volume", env["TAILOR_CONFIG"].Value)
	}
	// Every key the pod reads from a Secret is in the example Secret.
	for _, e := range c.Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		if !slices.ContainsFunc(m.secrets, func(s corev1.Secret) bool { _, ok := s.StringData[ref.Key]; return s.Name == ref.Name && ok }) {
			t.Errorf("%s reads %s/%s, which secret.example.yaml lacks", e.Name, ref.Name, ref.Key)
		}
	}
	// Every environment variable named TAILOR_* is an option.
	known := map[string]bool{"TAILOR_CONFIG": true}
	for _, name := range config.EnvNames() {
		known[name] = true
	}
	for name := range env {
		if strings.HasPrefix(name, "TAILOR_") && !known[name] {
			t.Errorf("%s is not an option tailor reads", name)
		}
	}

	// The kustomization lists every manifest but the example Secret.
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	data, err := os.ReadFile(filepath.Join("k8s", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	for _, f := range m.files {
		if listed := slices.Contains(k.Resources, f); listed == regexp.MustCompile(`example`).MatchString(f) {
			t.Errorf("kustomization.yaml: %s listed %v", f, listed)
		}
	}
}
