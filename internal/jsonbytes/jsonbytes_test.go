package jsonbytes

import "testing"

func TestEncode(t *testing.T) {
	if s, enc := Encode(nil); s != nil || enc != "" {
		t.Fatalf("nil: %v %q", s, enc)
	}
	if s, enc := Encode([]byte("user-7")); s == nil || *s != "user-7" || enc != "" {
		t.Fatalf("text: %v %q", s, enc)
	}
	if s, enc := Encode([]byte{0xff, 0x00}); s == nil || *s != "/wA=" || enc != "base64" {
		t.Fatalf("binary: %v %q", s, enc)
	}
}
