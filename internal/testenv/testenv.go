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
