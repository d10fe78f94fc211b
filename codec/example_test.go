package codec_test

import (
	"errors"
	"fmt"

	"github.com/whippet-go/whippet/codec"
)

type Renewal struct {
	User string `json:"user"`
	Plan string `json:"plan"`
}

func Example() {
	c := codec.JSON[Renewal]()
	b, _ := c.Encode(Renewal{User: "u-7", Plan: "yearly"})
	fmt.Println(string(b))

	r, _ := c.Decode(b)
	fmt.Println(r.Plan)

	_, err := c.Decode([]byte("not json"))
	fmt.Println(errors.Is(err, codec.ErrDecode))
	// Output:
	// {"user":"u-7","plan":"yearly"}
	// yearly
	// true
}
