package admin_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/whippet-go/whippet/consumer/admin"
)

// TestEveryConfigErrorNamesItsField checks each admin option rule on its
// own: New's error is an *admin.ConfigError matching ErrInvalidConfig whose
// Field names the option (and the registration, for Consumer).
func TestEveryConfigErrorNamesItsField(t *testing.T) {
	_, c := newIdle(t)
	ok := admin.Consumer("svc", c)
	for _, tc := range []struct {
		name  string
		opts  []admin.Option
		field string
		want  string
	}{
		{"no consumer", nil, "Consumer", "at least one consumer is required"},
		{"consumer name", []admin.Option{admin.Consumer("a b", c)}, "Consumer[0].Name", "must contain only ASCII letters"},
		{"consumer twice", []admin.Option{ok, admin.Consumer("svc", c)}, "Consumer[1].Name", `"svc" is registered twice`},
		{"nil consumer", []admin.Option{admin.Consumer("svc", nil)}, "Consumer[0].Consumer", "must not be nil"},
		{"nil dlq", []admin.Option{ok, admin.DLQ(nil)}, "DLQ", "must not be nil"},
		{"dlq topics without dlq", []admin.Option{ok, admin.DLQTopics("t-g-dlq")}, "DLQTopics", "needs DLQ"},
		{"nil logger", []admin.Option{ok, admin.Logger(nil)}, "Logger", "must not be nil"},
		{"timeout", []admin.Option{ok, admin.Timeout(-time.Second)}, "Timeout", "must be > 0, got -1s"},
		{"prefix", []admin.Option{ok, admin.Prefix("admin")}, "Prefix", `must start with '/' and not end with one, like "/whippet", got "admin"`},
		{"refresh", []admin.Option{ok, admin.Refresh(100 * time.Millisecond)}, "Refresh", "must be at least 500ms, got 100ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := admin.New(tc.opts...)
			var ce *admin.ConfigError
			if !errors.Is(err, admin.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Pkg != "admin" {
				t.Fatalf("%v is not an admin *ConfigError", err)
			}
			if !strings.Contains(err.Error(), "admin: "+tc.field+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %s with %q", err, tc.field, tc.want)
			}
		})
	}
}
