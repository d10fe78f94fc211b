package consumer

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// An attempt notes the deepest context its middlewares passed on, for the
// record's forward, and costs no allocation for it: with no middleware, and
// with middlewares that pass the context on as it is.
func TestAttemptNotesTheDeepestContextWithoutAllocating(t *testing.T) {
	type key struct{}
	var inner context.Context
	handler := HandlerFunc(func(ctx context.Context, _ *kgo.Record) error { inner = ctx; return nil })
	pass := func(next Handler) Handler { return next }
	adding := func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
			return next.Handle(context.WithValue(ctx, key{}, "mw"), rec)
		})
	}
	rec := &kgo.Record{}
	for _, tc := range []struct {
		name string
		mws  []Middleware
	}{{"none", nil}, {"passing", []Middleware{pass, pass}}} {
		p := &partition{c: &Consumer{handler: chain(handler, tc.mws)}}
		h := &handling{Context: context.Background()}
		if n := testing.AllocsPerRun(100, func() { _, _ = p.attempt(h, h, rec, &laneClock{}) }); n != 0 {
			t.Errorf("%s: %v allocations per attempt, want 0", tc.name, n)
		}
		if h.reached != inner {
			t.Errorf("%s: noted %v, want the handler's ctx %v", tc.name, h.reached, inner)
		}
	}
	p := &partition{c: &Consumer{handler: chain(handler, []Middleware{pass, adding, pass})}}
	h := &handling{Context: context.Background()}
	_, _ = p.attempt(h, h, rec, &laneClock{})
	if h.reached != inner || h.valuesCtx().Value(key{}) != "mw" {
		t.Errorf("noted %v, want the handler's ctx %v, with the middleware's value", h.reached, inner)
	}
	if v := withValues(context.Background(), h.valuesCtx()); v.Value(key{}) != "mw" || v.Value(outboxKey{}) != nil || v.Value(handlingKey{}) != nil {
		t.Errorf("the produce context of the attempt does not keep the middleware's value or hides not the handler call's keys")
	}
}
