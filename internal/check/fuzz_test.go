package check_test

import (
	"errors"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/internal/check"
)

// validTopic is Kafka's topic-name rule, written independently of TopicRule.
var validTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// FuzzTopicRule checks TopicRule against Kafka's rule: it accepts exactly
// the names of 1 to 249 characters of [a-zA-Z0-9._-] other than "." and
// "..", and every rule it reports says what is wrong.
func FuzzTopicRule(f *testing.F) {
	for _, s := range []string{"orders", "a.b_c-D9", "", ".", "..", "...", "bad topic", "ümlaut", "tab\t", "x/y",
		strings.Repeat("x", 249), strings.Repeat("x", 250), "\x00", "orders\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		rule := check.TopicRule(name)
		want := validTopic.MatchString(name) && name != "." && name != ".."
		if (rule == "") != want {
			t.Fatalf("TopicRule(%q) = %q, but Kafka would %s it", name, rule, map[bool]string{true: "accept", false: "reject"}[want])
		}
		if rule != "" && !strings.HasPrefix(rule, "must ") {
			t.Fatalf("TopicRule(%q) = %q: not a rule", name, rule)
		}
	})
}

var errFuzz = errors.New("fuzz: invalid config")

// FuzzBrokers checks Brokers on a comma-separated seed list: every seed it
// accepts is host:port with a host and a port from 1 to 65535, and franz-go
// takes the list; every violation is a *check.Error naming the field and
// matching the sentinel.
func FuzzBrokers(f *testing.F) {
	for _, s := range []string{"127.0.0.1:9092", "a:1,b:65535", "[::1]:9092", "localhost", "h:0", "h:x", "h:65536", ":9092",
		"a b:1", "h:-1", "h:+1", "", ",", "[::1]", "host:9092:1", "\x00:1", "\t:1", "kafka-0.kafka.svc.cluster.local:9093"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		var seeds []string
		if list != "" {
			seeds = strings.Split(list, ",")
		}
		v := check.NewErrors("fuzz", errFuzz)
		v.Brokers("Brokers", seeds)
		err := v.Err()
		if err != nil {
			var ce *check.Error
			if !errors.Is(err, errFuzz) || !errors.As(err, &ce) || ce.Field != "Brokers" ||
				!strings.HasPrefix(err.Error(), "fuzz: Brokers: ") {
				t.Fatalf("error %v does not name Brokers", err)
			}
			return
		}
		if len(seeds) == 0 {
			t.Fatal("an empty list was accepted")
		}
		for _, s := range seeds {
			host, port, err := net.SplitHostPort(s)
			p, perr := strconv.Atoi(port)
			if err != nil || host == "" || strings.TrimSpace(host) != host || perr != nil || p < 1 || p > 65535 {
				t.Fatalf("accepted seed %q", s)
			}
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			t.Fatalf("accepted %q, which franz-go rejects: %v", seeds, err)
		}
		cl.Close()
	})
}
