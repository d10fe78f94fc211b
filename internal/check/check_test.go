package check_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/whippet-go/whippet/internal/check"
)

var errMine = errors.New("mine: invalid config")

func TestErrorsNameFieldAndMatchTheirSentinel(t *testing.T) {
	v := check.NewErrors("mine", errMine)
	if v.Err() != nil {
		t.Fatal("no violation must give a nil error")
	}
	v.Add("Size", "must be > 0, got %d", -1)
	v.AddCause("Client", "rejected", errors.New("bad TLS"))
	err := v.Err()
	if !errors.Is(err, errMine) {
		t.Fatalf("%v does not match its sentinel", err)
	}
	if errors.Is(err, errors.New("mine: invalid config")) {
		t.Fatal("matched another sentinel with the same text")
	}
	want := "mine: Size: must be > 0, got -1\nmine: Client: rejected: bad TLS"
	if err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
	var ce *check.Error
	if !errors.As(err, &ce) || ce.Field != "Size" {
		t.Fatalf("errors.As found %+v, want the Size violation first", ce)
	}
}

func TestTopicRule(t *testing.T) {
	for name, want := range map[string]string{
		"orders":                 "",
		"a.b_c-D9":               "",
		"":                       "must not be empty",
		".":                      `must not be "."`,
		"..":                     `must not be ".."`,
		"bad topic":              "must contain only ASCII letters",
		"ümlaut":                 "must contain only ASCII letters",
		strings.Repeat("x", 249): "",
		strings.Repeat("x", 250): "must be at most 249 characters, got 250",
	} {
		if got := check.TopicRule(name); !strings.HasPrefix(got, want) || (want == "" && got != "") {
			t.Errorf("TopicRule(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestBrokers(t *testing.T) {
	v := check.NewErrors("mine", errMine)
	v.Brokers("Brokers", []string{"127.0.0.1:9092", "localhost", "h:0", "h:x"})
	want := "mine: Brokers: \"localhost\" is not host:port: address localhost: missing port in address\n" +
		"mine: Brokers: \"h:0\" has an invalid port\nmine: Brokers: \"h:x\" has an invalid port"
	if err := v.Err(); err == nil || err.Error() != want {
		t.Fatalf("Brokers errors:\n%v\nwant:\n%s", err, want)
	}
	v = check.NewErrors("mine", errMine)
	v.Brokers("Seeds", nil)
	if err := v.Err(); err == nil || err.Error() != "mine: Seeds: at least one seed broker is required" {
		t.Fatalf("no brokers: %v", err)
	}
}
