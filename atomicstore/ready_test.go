package atomicstore_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/testkit"
)

// TestReadyHandler checks, on real Kafka, the store's readiness probe: 200
// once its replica loaded the store topic (with the entries it holds), 503
// once the store is closed.
func TestReadyHandler(t *testing.T) {
	kc := testkit.Shared(t)
	name := testkit.TopicName(t.Name())
	startProcessor(t, kc, name, name+"-p1", atomicstore.Int64(), nil)
	s := openStore(t, kc, name, atomicstore.Int64())
	if _, err := s.Update(context.Background(), "visits", atomicstore.Add(1)); err != nil {
		t.Fatal(err)
	}
	probe := func() (int, string) {
		rec := httptest.NewRecorder()
		s.ReadyHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if code, body := probe(); !s.Ready() || code != http.StatusOK || !strings.Contains(body, "atomicstore "+name+": ready, 1 entries") {
			return fmt.Errorf("loaded store: Ready() = %v, probe %d %q", s.Ready(), code, body)
		}
		return nil
	})
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, body := probe(); code != http.StatusServiceUnavailable || !strings.Contains(body, "closed") {
		t.Errorf("closed store: probe %d %q", code, body)
	}
}
