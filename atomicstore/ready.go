package atomicstore

import (
	"fmt"
	"net/http"
)

// Ready reports whether the local replica finished its initial load of the
// store topic (see WaitReady). It stays true afterwards, also while Kafka is
// unreachable: reads are served from memory, and Update fails on its own.
func (s *Store[K, V]) Ready() bool { return s.kv.Ready() }

// ReadyHandler returns an http.Handler for a readiness probe, like
// kvstore.Store.ReadyHandler: 200 "atomicstore <name>: ready, <n> entries"
// once the replica is loaded (see Ready), else 503 saying that it is loading
// or closed.
func (s *Store[K, V]) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		select {
		case <-s.closing:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "atomicstore %s: closed\n", s.name)
			return
		default:
		}
		if s.Ready() {
			fmt.Fprintf(w, "atomicstore %s: ready, %d entries\n", s.name, s.kv.Len())
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "atomicstore %s: loading, %d entries\n", s.name, s.kv.Len())
	})
}
