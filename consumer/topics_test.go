package consumer

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/whippet-go/whippet/retry"
)

// TestSubscriptionTakesExactlyTheGroupsStages checks the regular expressions
// that TopicRegex hands to franz-go against the rule they implement, over
// names of sources, retry and dead-letter topics (of this group and of
// others, with "-" in the names), patterns with and without anchors, and
// policies of 0 to 12 stages.
func TestSubscriptionTakesExactlyTheGroupsStages(t *testing.T) {
	patterns := []string{`^orders.*`, `^orders$`, `orders`, `^(orders|payments)$`, `^a$`, `^a-b$`, `eu$|^pay`,
		`(?m)^orders$`, `\borders\b`, `.*`, `^orders(-eu)?$`, `retry`, `-0$`, `^a\z`, `(?i)^ORDERS$`, `^[a-c]+$|^x`}
	groups := []string{"billing", "b-c", "c", "bil.ling"}
	bases := []string{"orders", "orders-eu", "payments", "a-b", "a", "ordersx", "xorders", "order", "b-c", "pay-0", ""}
	for _, group := range groups {
		var names []string
		for _, x := range bases {
			if x != "" {
				names = append(names, x)
			}
			names = append(names, retry.DLQTopicName(x, group), retry.DLQTopicName(x, "other"), x+"-"+group+"-retry-01",
				retry.TopicName(retry.TopicName(x, group, 0), group, 1), retry.TopicName(retry.DLQTopicName(x, group), group, 0),
				retry.DLQTopicName(retry.TopicName(x, group, 0), group), retry.TopicName(x, "other", 0))
			for _, n := range []int{0, 1, 2, 3, 9, 10, 11, 12, 13, 20, 100} {
				names = append(names, retry.TopicName(x, group, n))
			}
		}
		for _, stages := range []int{0, 1, 2, 3, 10, 12} {
			for _, p := range patterns {
				include, exclude, err := subscription([]string{p}, group, stages)
				if err != nil {
					t.Fatalf("%q, %d stages: %v", p, stages, err)
				}
				user := regexp.MustCompile(p)
				inc, exc := compileAll(include), compileAll(exclude)
				for _, name := range names {
					want := user.MatchString(name)
					if ownTopic(name, group) {
						source, n, ok := retry.ParseTopicName(name, group)
						want = ok && n < stages && !ownTopic(source, group) && (user.MatchString(source) || user.MatchString(name))
					}
					if got := franzWants(inc, exc, name); got != want {
						t.Errorf("group %q, %d stages, pattern %q: %q consumed %v, want %v (include %q, exclude %q)",
							group, stages, p, name, got, want, include, exclude)
					}
				}
			}
		}
	}
	for _, p := range []string{`^o$x`, `(a$)*`, `^(o$|p)x`, `(?:a$){2}`} {
		if _, _, err := subscription([]string{p}, "g", 1); !errors.Is(err, errEndInside) {
			t.Errorf("%q: %v, want errEndInside", p, err)
		}
		if _, _, err := subscription([]string{p}, "g", 0); err != nil {
			t.Errorf("%q without non-blocking retries: %v", p, err)
		}
	}
}

// franzWants decides as franz-go's regex consumer does: a topic matching an
// include and no exclude.
func franzWants(include, exclude []*regexp.Regexp, topic string) bool {
	match := func(res []*regexp.Regexp) bool {
		for _, re := range res {
			if re.MatchString(topic) {
				return true
			}
		}
		return false
	}
	return match(include) && !match(exclude) && !strings.HasPrefix(topic, "__")
}

func compileAll(res []string) []*regexp.Regexp {
	out := make([]*regexp.Regexp, len(res))
	for i, re := range res {
		out[i] = regexp.MustCompile(re)
	}
	return out
}
