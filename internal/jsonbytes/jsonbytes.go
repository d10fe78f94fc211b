// Package jsonbytes shows record bytes (keys, values, header values) in JSON
// the one way the admin API and the CLI share: as text when they are UTF-8,
// else as base64, saying which.
package jsonbytes

import (
	"encoding/base64"
	"unicode/utf8"
)

// Encode returns b as text if it is UTF-8, else as base64 with the encoding
// "base64"; nil and "" for nil.
func Encode(b []byte) (*string, string) {
	if b == nil {
		return nil, ""
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, ""
	}
	s := base64.StdEncoding.EncodeToString(b)
	return &s, "base64"
}
