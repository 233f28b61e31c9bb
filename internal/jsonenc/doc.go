// Package jsonenc appends JSON values to byte slices, for the encoders of
// the engine's hot paths (decide answers, segment change records, the
// events collect writes to Kafka) that write their JSON by hand instead of
// through encoding/json's reflection.
//
// What it writes is always RFC 8259 JSON: unlike fastjson's MarshalTo,
// which quotes strings it has decoded with Go's rules (\a, \x00, \U0001f600
// are not JSON), every string goes through AppendString.
package jsonenc
