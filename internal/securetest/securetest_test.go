package securetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestAssertNoSecretCatchesLeaks(t *testing.T) {
	c := NewCapture()
	log := c.Logger()
	log.Debug("connecting", errorField(errors.New("login as alice with password hunter2 failed")))
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x", ConstLabels: prometheus.Labels{"user": "alice"}}))
	c.AddMetrics(t, reg)
	c.Add("stderr", "all fine")

	r := &recorder{TB: t}
	c.AssertNoSecret(r, 1, "hunter2")
	if len(r.errs) != 1 || strings.Contains(r.errs[0], "hunter2") || !strings.Contains(r.errs[0], "<SECRET>") {
		t.Errorf("leak in a log field: failures %q; want one that masks the secret", r.errs)
	}
	r = &recorder{TB: t}
	c.AssertNoSecret(r, 1, `user="alice"`)
	if len(r.errs) != 1 {
		t.Errorf("leak in a metric label not found: %q", r.errs)
	}
	r = &recorder{TB: t}
	c.AssertNoSecret(r, 1, "not-there")
	if len(r.errs) != 0 {
		t.Errorf("false alarm: %q", r.errs)
	}
	r = &recorder{TB: t}
	NewCapture().AssertNoSecret(r, 1, "not-there")
	if len(r.errs) != 1 {
		t.Errorf("an empty capture passed: %q", r.errs)
	}
}

func errorField(err error) zap.Field { return zap.Error(err) }
