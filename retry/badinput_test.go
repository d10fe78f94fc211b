package retry_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/retry"
)

// A long error message is cut to MaxErrorLength bytes at a rune boundary, so
// that the header (shown by the admin page and the CLI) stays valid UTF-8.
// (A unit test rather than a FuzzInfoFor seed: inputs this long slow the
// fuzzer's minimization to a crawl.)
func TestLongErrorIsCutAtARuneBoundary(t *testing.T) {
	for _, prefix := range []string{"", "x", "xx"} {
		msg := prefix + strings.Repeat("é", retry.MaxErrorLength)
		info := retry.Info{Attempt: 2, LastError: msg}
		got, _ := retry.InfoFor(&kgo.Record{Headers: info.Headers(nil)})
		if !utf8.ValidString(got.LastError) || !strings.HasPrefix(msg, got.LastError) ||
			len(got.LastError) > retry.MaxErrorLength || len(got.LastError) < retry.MaxErrorLength-1 {
			t.Fatalf("%d-byte error cut to %d bytes (valid UTF-8: %v)", len(msg), len(got.LastError), utf8.ValidString(got.LastError))
		}
	}
}
