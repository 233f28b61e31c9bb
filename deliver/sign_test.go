package deliver

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/internal/testenv"
)

// goRecipe is the Go verification docs/destinations.md shows, as is.
func goRecipe(secret, header string, body []byte) bool {
	t, v1, _ := strings.Cut(strings.TrimPrefix(header, "t="), ",v1=")
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(t + "." + string(body)))
	return hmac.Equal([]byte(v1), []byte(hex.EncodeToString(mac.Sum(nil))))
}

// pythonRecipe is the Python verification docs/destinations.md shows.
const pythonRecipe = `import hmac, hashlib
def verify(secret: bytes, header: str, body: bytes) -> bool:
    t, v1 = (p.split("=", 1)[1] for p in header.split(","))
    return hmac.compare_digest(v1, hmac.new(secret, t.encode() + b"." + body, hashlib.sha256).hexdigest())
`

func TestSignatureRecipes(t *testing.T) {
	const secret = "whsec-0123456789abcdef"
	body := []byte(`{"id":"tailor.segments/0/7","key":"u1","segment":"cart_abandoner","change":"entered"}`)
	header := Sign([]byte(secret), time.Unix(1780000000, 0), body)
	if !strings.HasPrefix(header, "t=1780000000,v1=") {
		t.Fatalf("header %q", header)
	}
	cases := []struct {
		name         string
		secret, body string
		want         bool
	}{
		{"as sent", secret, string(body), true},
		{"body changed", secret, strings.Replace(string(body), "entered", "exited", 1), false},
		{"other secret", secret + "x", string(body), false},
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		testenv.Missing(t, "python3 for the documented Python recipe: %v", err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := goRecipe(c.secret, header, []byte(c.body)); got != c.want {
				t.Errorf("Go recipe: %v, want %v", got, c.want)
			}
			if got := Verify([]byte(c.secret), header, []byte(c.body), time.Time{}, 0) == nil; got != c.want {
				t.Errorf("Verify: %v, want %v", got, c.want)
			}
			if python == "" {
				return
			}
			script := pythonRecipe + "import sys\nprint(verify(sys.argv[1].encode(), sys.argv[2], sys.argv[3].encode()))\n"
			out, err := exec.Command(python, "-c", script, c.secret, header, c.body).CombinedOutput()
			if err != nil {
				t.Fatalf("python: %v\n%s", err, out)
			}
			if got := strings.TrimSpace(string(out)) == "True"; got != c.want {
				t.Errorf("Python recipe: %s, want %v", out, c.want)
			}
		})
	}
}

func TestVerifyTolerance(t *testing.T) {
	secret, body := []byte("0123456789abcdef"), []byte("{}")
	sent := time.Unix(1780000000, 0)
	header := Sign(secret, sent, body)
	cases := []struct {
		now  time.Time
		want error
	}{
		{sent.Add(4 * time.Minute), nil},
		{sent.Add(6 * time.Minute), ErrBadSignature},
		{sent.Add(-6 * time.Minute), ErrBadSignature},
	}
	for _, c := range cases {
		if err := Verify(secret, header, body, c.now, 5*time.Minute); !errors.Is(err, c.want) {
			t.Errorf("at %v: %v, want %v", c.now.Sub(sent), err, c.want)
		}
	}
	if err := Verify(secret, "v1=abc", body, sent, 0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("no t=: %v", err)
	}
}

// FuzzVerify: a signature header from anywhere never panics Verify, and
// what Sign makes always verifies.
func FuzzVerify(f *testing.F) {
	f.Add("0123456789abcdef", "t=1780000000,v1=00ff", []byte(`{"id":"x"}`), int64(1780000000))
	f.Add("s", "v1=,t=", []byte{}, int64(0))
	f.Add("s", "t=1,v1=zz,v1=00", []byte("b"), int64(-1))
	f.Fuzz(func(t *testing.T, secret, header string, body []byte, at int64) {
		_ = Verify([]byte(secret), header, body, time.Unix(at, 0), time.Minute)
		_ = retryAfter(header, time.Unix(at, 0))
		sent := time.Unix(at%(1<<40), 0)
		if err := Verify([]byte(secret), Sign([]byte(secret), sent, body), body, sent, time.Minute); err != nil {
			t.Errorf("a signature Sign made does not verify: %v", err)
		}
	})
}
