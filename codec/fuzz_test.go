package codec_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/whippet-go/whippet/codec"
)

// FuzzStringCodec checks the String codec: any bytes either decode to the
// same text, which encodes back to the same bytes, or fail with ErrDecode
// because they are not UTF-8; any string encodes and decodes back, or fails
// with ErrEncode because it is not UTF-8.
func FuzzStringCodec(f *testing.F) {
	for _, s := range []string{"", "hello", "ünïcödé", "日本語", "\x00", "\xff\xfe", "a\xc3", strings.Repeat("x", 100) + "\x80"} {
		f.Add([]byte(s))
	}
	c := codec.String()
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := c.Decode(b)
		switch {
		case err != nil:
			if !errors.Is(err, codec.ErrDecode) || utf8.Valid(b) || !strings.Contains(err.Error(), "String") {
				t.Fatalf("Decode(%q) = %v: want an ErrDecode naming String, only for invalid UTF-8", b, err)
			}
		case s != string(b):
			t.Fatalf("Decode(%q) = %q", b, s)
		default:
			if enc, err := c.Encode(s); err != nil || !bytes.Equal(enc, b) {
				t.Fatalf("Encode(Decode(%q)) = %q, %v", b, enc, err)
			}
		}
		str := string(b)
		enc, err := c.Encode(str)
		if err != nil {
			if !errors.Is(err, codec.ErrEncode) || utf8.ValidString(str) {
				t.Fatalf("Encode(%q) = %v: want ErrEncode, only for invalid UTF-8", str, err)
			}
			return
		}
		if dec, err := c.Decode(enc); err != nil || dec != str {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", str, dec, err)
		}
	})
}

// FuzzBytesCodec checks that Bytes is the identity both ways.
func FuzzBytesCodec(f *testing.F) {
	f.Add([]byte(nil))
	f.Add([]byte{})
	f.Add([]byte("\x00\xff payload"))
	c := codec.Bytes()
	f.Fuzz(func(t *testing.T, b []byte) {
		dec, err := c.Decode(b)
		if err != nil || !bytes.Equal(dec, b) || (dec == nil) != (b == nil) {
			t.Fatalf("Decode(%q) = %q, %v", b, dec, err)
		}
		enc, err := c.Encode(dec)
		if err != nil || !bytes.Equal(enc, b) || (enc == nil) != (b == nil) {
			t.Fatalf("Encode(%q) = %q, %v", dec, enc, err)
		}
	})
}

// fuzzOrder is a typical event value for the JSON codec.
type fuzzOrder struct {
	ID     string            `json:"id"`
	Amount int64             `json:"amount"`
	Price  float64           `json:"price"`
	Paid   bool              `json:"paid"`
	Tags   []string          `json:"tags,omitempty"`
	Attrs  map[string]string `json:"attrs,omitempty"`
	Ref    *int              `json:"ref,omitempty"`
}

// FuzzJSONCodec checks the JSON codec on arbitrary bytes: they either decode
// to a value whose encoding decodes to a value with the same encoding, or fail with an
// ErrDecode that names the target type; Encode of a decoded value never
// fails.
func FuzzJSONCodec(f *testing.F) {
	for _, s := range []string{
		`{"id":"o-1","amount":250,"price":9.99,"paid":true,"tags":["a","b"],"attrs":{"k":"v"},"ref":7}`,
		`{"id":"o-2"}`, `{}`, `null`, ``, `not json`, `{"amount":"250"}`, `{"id":"x"} trailing`, `[1,2]`,
		`{"amount":9223372036854775808}`, `{"price":1e400}`, `{"id":"\ud800"}`, `{"ID":"case"}`, `{"tags":null}`,
	} {
		f.Add([]byte(s))
	}
	c := codec.JSON[fuzzOrder]()
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := c.Decode(b)
		if err != nil {
			if !errors.Is(err, codec.ErrDecode) || !strings.Contains(err.Error(), "codec_test.fuzzOrder") {
				t.Fatalf("Decode(%q) = %v: want an ErrDecode naming the type", b, err)
			}
			if !reflect.DeepEqual(v, fuzzOrder{}) {
				t.Fatalf("Decode(%q) failed but returned %+v, want the zero value", b, v)
			}
			return
		}
		enc, err := c.Encode(v)
		if err != nil {
			t.Fatalf("Encode(%+v) of a decoded value: %v", v, err)
		}
		// Compared as encodings: omitempty makes an empty map and a nil
		// one encode alike, so values may differ in that only.
		back, err := c.Decode(enc)
		if err != nil {
			t.Fatalf("%q decodes to %+v, which encodes to %q, which does not decode: %v", b, v, enc, err)
		}
		if enc2, err := c.Encode(back); err != nil || !bytes.Equal(enc2, enc) {
			t.Fatalf("%q decodes to %+v, which encodes to %q, which decodes to %+v, which encodes to %q", b, v, enc, back, enc2)
		}
	})
}
