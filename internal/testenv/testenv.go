// Package testenv decides what a test does when the machine lacks a part
// it needs (Java and Maven for Apache Kafka, Chromium, a package from
// npm): on a developer's machine it skips, saying what is missing; in CI,
// which installs every part (.ci/run sets TAILOR_TEST_STRICT), it fails,
// so that a test CI is meant to run cannot pass by not running.
package testenv

import (
	"os"
	"testing"
)

// EnvStrict names the environment variable that turns Missing's skips
// into failures.
const EnvStrict = "TAILOR_TEST_STRICT"

// Missing ends t because a part it needs is missing: a skip, or a
// failure when EnvStrict is set to anything but "" or "0".
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if v := os.Getenv(EnvStrict); v != "" && v != "0" {
		t.Fatalf("missing in CI ("+EnvStrict+" is set): "+format, args...)
	}
	t.Skipf(format, args...)
}
