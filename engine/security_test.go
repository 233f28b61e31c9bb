package engine_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/state"
)

// selfSigned returns a TLS certificate for 127.0.0.1 and the path of its
// PEM file, which serves as the CA bundle.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tailor test broker"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, path
}

// TestTLSAndSASL connects to a broker that requires TLS and SASL with each
// supported mechanism, rejects a wrong password, and runs the engine over
// SCRAM-SHA-512.
func TestTLSAndSASL(t *testing.T) {
	cert, caFile := selfSigned(t)
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plain-user", "plain-pass"),
		kfake.Superuser("SCRAM-SHA-256", "scram256", "pass256"),
		kfake.Superuser("SCRAM-SHA-512", "scram512", "pass512"),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	secured := func(mechanism, user, pass string) *config.Config {
		cfg := testConfig(t, brokers, "sasl-"+mechanism+".", t.TempDir())
		cfg.Kafka.TLS.Enabled = true
		cfg.Kafka.TLS.CAFile = caFile
		cfg.Kafka.SASL.Mechanism, cfg.Kafka.SASL.Username, cfg.Kafka.SASL.Password = mechanism, user, pass
		return cfg
	}
	ping := func(cfg *config.Config) error {
		client, err := engine.ClientConfig(cfg)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return engine.Ping(ctx, client)
	}
	for _, c := range []struct{ mechanism, user, pass string }{
		{"PLAIN", "plain-user", "plain-pass"},
		{"SCRAM-SHA-256", "scram256", "pass256"},
		{"SCRAM-SHA-512", "scram512", "pass512"},
	} {
		if err := ping(secured(c.mechanism, c.user, c.pass)); err != nil {
			t.Errorf("%s: %v", c.mechanism, err)
		}
		if err := ping(secured(c.mechanism, c.user, "wrong")); err == nil {
			t.Errorf("%s with a wrong password connected", c.mechanism)
		}
	}
	noTLS := secured("PLAIN", "plain-user", "plain-pass")
	noTLS.Kafka.TLS = config.TLS{}
	if err := ping(noTLS); err == nil {
		t.Error("plaintext connected to a TLS listener")
	}

	e := startEngine(t, secured("SCRAM-SHA-512", "scram512", "pass512"))
	if resp := e.post(t, "/v1/track", `{"userId": "secure", "event": "E"}`); resp.Status != http.StatusOK {
		t.Fatalf("track: %d %s", resp.Status, resp.Body)
	}
	e.waitProfile(t, "secure", func(v state.View) bool { return v.Events["E"] == 1 })
}
