package codec_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/whippet-go/whippet/codec"
)

type order struct {
	ID     string  `json:"id"`
	Amount float64 `json:"amount"`
	Items  []int   `json:"items,omitempty"`
}

func TestBytesCodecRoundTrip(t *testing.T) {
	c := codec.Bytes()
	for _, in := range [][]byte{nil, {}, []byte("abc"), {0, 0xff, 0x80}} {
		b, err := c.Encode(in)
		if err != nil {
			t.Fatal(err)
		}
		if (in == nil) != (b == nil) {
			t.Errorf("Encode(%v) = %v: nil-ness changed (a nil key must stay a null key)", in, b)
		}
		out, err := c.Decode(b)
		if err != nil || !bytes.Equal(out, in) {
			t.Errorf("round trip of %v = %v, %v", in, out, err)
		}
	}
}

func TestStringCodecRoundTrip(t *testing.T) {
	c := codec.String()
	for _, in := range []string{"", "user-42", "Zürich ⏰ 東京"} {
		b, err := c.Encode(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.Decode(b)
		if err != nil || out != in {
			t.Errorf("round trip of %q = %q, %v", in, out, err)
		}
	}
}

func TestStringCodecRejectsInvalidUTF8(t *testing.T) {
	c := codec.String()
	_, err := c.Decode([]byte{'a', 0xff})
	if !errors.Is(err, codec.ErrDecode) || !strings.Contains(err.Error(), "String: invalid UTF-8") {
		t.Errorf("Decode(invalid UTF-8) error = %v, want ErrDecode naming String", err)
	}
	_, err = c.Encode("a\xff")
	if !errors.Is(err, codec.ErrEncode) {
		t.Errorf("Encode(invalid UTF-8) error = %v, want ErrEncode", err)
	}
}

func TestJSONCodecRoundTrip(t *testing.T) {
	c := codec.JSON[order]()
	in := order{ID: "o-1", Amount: 12.5, Items: []int{1, 2}}
	b, err := c.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"id":"o-1","amount":12.5,"items":[1,2]}` {
		t.Errorf("Encode = %s", b)
	}
	out, err := c.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.ID != in.ID || out.Amount != in.Amount || len(out.Items) != 2 {
		t.Errorf("Decode = %+v, want %+v", out, in)
	}

	// Pointer and map types work too.
	pc := codec.JSON[*order]()
	pb, _ := pc.Encode(&in)
	if po, err := pc.Decode(pb); err != nil || po.ID != "o-1" {
		t.Errorf("pointer round trip = %+v, %v", po, err)
	}
}

func TestJSONCodecDecodeErrors(t *testing.T) {
	c := codec.JSON[order]()
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "codec: decode: JSON into codec_test.order: empty input"},
		{"malformed", "{", "codec: decode: JSON into codec_test.order: unexpected end of JSON input"},
		{"wrong type", `{"amount":"lots"}`, "codec: decode: JSON into codec_test.order: json: cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := c.Decode([]byte(tc.in))
			if !errors.Is(err, codec.ErrDecode) {
				t.Fatalf("Decode(%q) error = %v, want ErrDecode", tc.in, err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("message:\n got %s\nwant prefix %s", err, tc.want)
			}
			if v.ID != "" || v.Amount != 0 {
				t.Errorf("Decode returned a partial value %+v with its error", v)
			}
		})
	}
}

func TestJSONCodecEncodeError(t *testing.T) {
	_, err := codec.JSON[chan int]().Encode(make(chan int))
	if !errors.Is(err, codec.ErrEncode) || !strings.Contains(err.Error(), "JSON from chan int") {
		t.Errorf("Encode(chan) error = %v, want ErrEncode naming chan int", err)
	}
}
