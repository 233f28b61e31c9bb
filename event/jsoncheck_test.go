package event

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// jsonCases are texts checkJSON must accept or reject exactly as
// encoding/json.Valid and utf8.Valid do together.
var jsonCases = []string{
	`{}`, `[]`, `""`, `0`, `-0`, `1.5e+10`, `-1E-2`, `true`, `false`, `null`,
	` {"a": [1, 2, {"b": null}], "c": "\u00e9\n\"\\/"} `,
	`{"k": "é ü 😀"}`, `[[[[[]]]]]`, `{"a":{"b":{"c":[]}}}`, `"\ud800"`,
	// invalid
	``, ` `, `{`, `}`, `[`, `]`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`,
	`{"a" 1}`, `{a: 1}`, `{'a': 1}`, `01`, `-`, `1.`, `.5`, `1e`, `1e+`, `+1`, `1.2.3`,
	`nan`, `NaN`, `Infinity`, `tru`, `nul`, `truee`, `[true false]`, `{} {}`, `1 2`,
	`"abc`, `"a\x"`, `"\u12"`, `"\u12G4"`, "\"a\tb\"", "\"\x01\"", "\"\xff\"",
	"\"\xc3\"", "\xef\xbb\xbf{}", "{}\x00", `{"a":1}}`, `[1]]`, `[}`, `{]`,
}

func TestCheckJSON(t *testing.T) {
	for _, c := range jsonCases {
		want := json.Valid([]byte(c)) && utf8.ValidString(c)
		_, err := checkJSON([]byte(c))
		if (err == nil) != want {
			t.Errorf("checkJSON(%q) = %v, want valid %v", c, err, want)
		}
	}
	// Errors say what and where.
	for in, want := range map[string]string{
		`{"a": 1.2.3}`:      `unexpected '.', want , or the end of the object at byte 9`,
		`{"a": "b\q"}`:      `invalid escape \q at byte 8`,
		`[1, 2`:             `unexpected end, want , or the end of the array at byte 5`,
		`{"a": 1} x`:        `unexpected 'x' after the value at byte 9`,
		"{\"a\": \"\x01\"}": `control character '\x01' in a string at byte 7`,
	} {
		if _, err := checkJSON([]byte(in)); err == nil || err.Error() != want {
			t.Errorf("checkJSON(%q): %v, want %q", in, err, want)
		}
	}
}

// TestCheckJSONOverflow: overflow is set exactly when a number is beyond
// float64's range.
func TestCheckJSONOverflow(t *testing.T) {
	for in, want := range map[string]bool{
		`{"a": 1e400}`:                       true,
		`[-1E+309]`:                          true,
		`[1.7e308]`:                          false,
		`[1e-400]`:                           false, // reads as 0
		`["1e400"]`:                          false, // a string
		`{"1e400": 1}`:                       false, // a key
		`[0, 1, 2e2]`:                        false,
		"[" + strings.Repeat("9", 309) + "]": true,
		"[" + strings.Repeat("9", 300) + "]": false,
	} {
		got, err := checkJSON([]byte(in))
		if err != nil || got != want {
			t.Errorf("checkJSON(%.40s) = %v, %v; want overflow %v", in, got, err, want)
		}
	}
}

// FuzzCheckJSON: checkJSON agrees with encoding/json.Valid and utf8.Valid
// on every input.
func FuzzCheckJSON(f *testing.F) {
	for _, c := range jsonCases {
		f.Add([]byte(c))
	}
	f.Add([]byte(strings.Repeat("[", 100) + strings.Repeat("]", 100)))
	f.Fuzz(func(t *testing.T, b []byte) {
		want := json.Valid(b) && utf8.Valid(b)
		if _, err := checkJSON(b); (err == nil) != want {
			t.Errorf("checkJSON(%q) = %v, want valid %v", b, err, want)
		}
	})
}
