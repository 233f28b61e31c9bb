package engine_test

import (
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/internal/testenv"
	"github.com/tailorcdp/tailor/stream"
)

// killableBroker is a Kafka broker private to a test that the test can
// kill and start again on the same port, with the data it had.
type killableBroker interface {
	Addrs() []string
	Kill(t *testing.T)  // as abruptly as the broker allows
	Start(t *testing.T) // again, after Kill
	Name() string
}

// killableBrokers are the brokers a test that kills one runs against:
// Apache Kafka (deploy/kafka: the jars fetched from Maven Central, cached
// in TAILOR_KAFKA_HOME or the repository's .cache/kafka), skipped when
// Java or Maven is absent, and the embedded kfake broker.
var killableBrokers = []struct {
	name  string
	start func(t *testing.T) killableBroker
}{
	{"apache-kafka", func(t *testing.T) killableBroker {
		for _, tool := range []string{"java", "mvn"} {
			if _, err := exec.LookPath(tool); err != nil {
				testenv.Missing(t, "%s is absent: no Apache Kafka broker", tool)
			}
		}
		return startApacheKafka(t)
	}},
	{"embedded", func(t *testing.T) killableBroker { return startKfake(t) }},
}

// eachKillableBroker runs test as a subtest of t on each killable broker.
func eachKillableBroker(t *testing.T, test func(t *testing.T, broker killableBroker)) {
	if testing.Short() {
		t.Skip("kills and restarts a broker")
	}
	for _, b := range killableBrokers {
		t.Run(b.name, func(t *testing.T) { test(t, b.start(t)) })
	}
}

// kfakeBroker is the embedded broker, closed and started again in process.
type kfakeBroker struct {
	dir  string
	port int
	e    *stream.Embedded
}

func startKfake(t *testing.T) *kfakeBroker {
	b := &kfakeBroker{dir: t.TempDir(), port: freePort(t)}
	b.Start(t)
	t.Cleanup(func() {
		if b.e != nil {
			b.e.Close()
		}
	})
	return b
}

func (b *kfakeBroker) Name() string { return "embedded kfake" }

func (b *kfakeBroker) Addrs() []string { return []string{"127.0.0.1:" + strconv.Itoa(b.port)} }

func (b *kfakeBroker) Kill(*testing.T) {
	b.e.Close()
	b.e = nil
}

func (b *kfakeBroker) Start(t *testing.T) {
	t.Helper()
	var err error
	if b.e, err = stream.StartEmbedded(b.dir, b.port, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("start the embedded broker on port %d: %v", b.port, err)
	}
}

// apacheKafka is a single-node KRaft Apache Kafka broker run from the
// test, killed with SIGKILL.
type apacheKafka struct {
	port, controller int
	props, logs      string
	jvm              []string
	cmd              *exec.Cmd
	exited           chan struct{} // closed when cmd has exited
}

func startApacheKafka(t *testing.T) *apacheKafka {
	t.Helper()
	repo, err := filepath.Abs(filepath.Join("..", "deploy", "kafka"))
	if err != nil {
		t.Fatal(err)
	}
	home := os.Getenv("TAILOR_KAFKA_HOME")
	if home == "" {
		home = filepath.Join(repo, "..", "..", ".cache", "kafka")
	}
	fetch := exec.Command(filepath.Join(repo, "kafka.sh"), "fetch")
	fetch.Env = append(os.Environ(), "TAILOR_KAFKA_HOME="+home)
	if out, err := fetch.CombinedOutput(); err != nil {
		testenv.Missing(t, "cannot fetch Apache Kafka: %v\n%s", err, out)
	}
	dir := t.TempDir()
	b := &apacheKafka{port: freePort(t), controller: freePort(t), props: filepath.Join(dir, "server.properties"), logs: filepath.Join(dir, "logs")}
	tmpl, err := os.ReadFile(filepath.Join(repo, "server.properties"))
	if err != nil {
		t.Fatal(err)
	}
	props := strings.NewReplacer("@PORT@", strconv.Itoa(b.port), "@CONTROLLER_PORT@", strconv.Itoa(b.controller),
		"@LOG_DIR@", filepath.Join(dir, "data")).Replace(string(tmpl))
	if err := os.WriteFile(b.props, []byte(props), 0o644); err != nil {
		t.Fatal(err)
	}
	b.jvm = []string{"-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-Dkafka.logs.dir=" + b.logs,
		"-Dlog4j2.configurationFile=" + filepath.Join(repo, "log4j2.properties"), "-cp", filepath.Join(home, "libs", "*")}
	id, err := exec.Command("java", append(b.jvm, "kafka.tools.StorageTool", "random-uuid")...).Output()
	if err != nil {
		t.Fatalf("kafka storage tool: %v", err)
	}
	fields := strings.Fields(string(id))
	if len(fields) == 0 {
		t.Fatal("kafka storage tool printed no cluster id")
	}
	format := exec.Command("java", append(b.jvm, "kafka.tools.StorageTool", "format", "-t", fields[len(fields)-1], "-c", b.props)...)
	if out, err := format.CombinedOutput(); err != nil {
		t.Fatalf("format the broker's storage: %v\n%s", err, out)
	}
	b.Start(t)
	t.Cleanup(func() { b.Kill(t) })
	return b
}

func (b *apacheKafka) Name() string { return "Apache Kafka" }

func (b *apacheKafka) Addrs() []string { return []string{"127.0.0.1:" + strconv.Itoa(b.port)} }

func (b *apacheKafka) Start(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(b.logs, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(b.logs, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	b.cmd = exec.Command("java", append(b.jvm, "kafka.Kafka", b.props)...)
	b.cmd.Stdout, b.cmd.Stderr = out, out
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start Apache Kafka: %v", err)
	}
	exited := make(chan struct{})
	b.exited = exited
	go func(cmd *exec.Cmd) { cmd.Wait(); close(exited) }(b.cmd)
	deadline := time.Now().Add(90 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", b.Addrs()[0], time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("Apache Kafka exited while starting:\n%s", b.logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("Apache Kafka did not listen on %s within 90 s:\n%s", b.Addrs()[0], b.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (b *apacheKafka) Kill(*testing.T) {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	b.cmd.Process.Kill() // SIGKILL
	<-b.exited
	b.cmd = nil
}

// logTail returns the end of the broker's output.
func (b *apacheKafka) logTail() []byte {
	out, _ := os.ReadFile(filepath.Join(b.logs, "stdout.log"))
	return out[max(0, len(out)-4000):]
}

// freePort returns a TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
