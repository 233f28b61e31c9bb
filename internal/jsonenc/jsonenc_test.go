package jsonenc

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

func TestAppendString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{`say "hi" \ bye`, `"say \"hi\" \\ bye"`},
		{"tab\tnew\nline\x00\x1f\r", `"tab\tnew\nline\u0000\u001f\r"`},
		{"<a&b>", `"<a&b>"`},
		{"café 🎉", `"café 🎉"`},
		{"bad \xff utf-8", `"bad \ufffd utf-8"`},
	} {
		if got := string(AppendString(nil, tc.in)); got != tc.want {
			t.Errorf("AppendString(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// FuzzAppendString: the output is always valid JSON and reads back as
// encoding/json reads what it writes of the same string.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c", "\x00\n\u2028", "\xff\xfe", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("AppendString(%q) = %s: not JSON: %v", s, got, err)
		}
		ref, _ := json.Marshal(s)
		var want string
		if err := json.Unmarshal(ref, &want); err != nil {
			t.Fatal(err)
		}
		if back != want {
			t.Errorf("AppendString(%q) reads back as %q, encoding/json's as %q", s, back, want)
		}
	})
}

func TestAppendValue(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{}`, `{}`},
		{`[]`, `[]`},
		{`{"a": [1, -2.5e3, true, false, null, "x"], "b": {"c": {}}}`, `{"a":[1,-2.5e3,true,false,null,"x"],"b":{"c":{}}}`},
		{`{"k": "\u0000\u0001\u0007\u000b\t\n", "\u0007key": 1}`, `{"k":"\u0000\u0001\u0007\u000b\t\n","\u0007key":1}`},
		{`{"a": 1, "a": 2}`, `{"a":1,"a":2}`},
		{`{"e": "😀 \u00e9 \"q\" \\ /"}`, `{"e":"😀 é \"q\" \\ /"}`},
	} {
		v, err := fastjson.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		v.Get("k").GetStringBytes() // a decoded string: MarshalTo would quote it Go's way
		if got := string(AppendValue(nil, v)); got != tc.want {
			t.Errorf("AppendValue(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if got := string(AppendValue(nil, nil)); got != "null" {
		t.Errorf("AppendValue(nil) = %s", got)
	}
}

// FuzzAppendValue: whatever fastjson parses out of valid JSON is written
// back as valid JSON that fastjson reads as the same value.
func FuzzAppendValue(f *testing.F) {
	for _, s := range []string{`{"a":"\u0007","b":[1,{"c":null}]}`, `"\ud800"`, `[1e400, -0, 1.5]`, `{"":""}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) || !utf8.ValidString(s) {
			return
		}
		v, err := fastjson.Parse(s)
		if err != nil {
			return // deeper than fastjson's limit
		}
		touch(v)
		out := AppendValue(nil, v)
		if !json.Valid(out) {
			t.Fatalf("AppendValue of %s = %s: not JSON", s, out)
		}
		back, err := fastjson.ParseBytes(out)
		if err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		if again := AppendValue(nil, back); string(again) != string(out) {
			t.Fatalf("%s written as %s, then as %s", s, out, again)
		}
	})
}

// touch decodes every string of v, as validation does with the ones it reads.
func touch(v *fastjson.Value) {
	switch v.Type() {
	case fastjson.TypeString:
		v.GetStringBytes()
	case fastjson.TypeArray:
		for _, item := range v.GetArray() {
			touch(item)
		}
	case fastjson.TypeObject:
		v.GetObject().Visit(func(_ []byte, mv *fastjson.Value) { touch(mv) })
	}
}
