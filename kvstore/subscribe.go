package kvstore

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"

	"go.uber.org/zap"
)

// Change is one change of a key, as a subscriber sees it.
type Change[K comparable, V any] struct {
	// Key is the key that changed.
	Key K
	// Old is the value before the change; the zero value if !Existed.
	Old V
	// New is the value after the change; the zero value if Deleted.
	New V
	// Existed is true if the key had a value before the change.
	Existed bool
	// Deleted is true if the change removed the key (a tombstone).
	Deleted bool
	// Initial is true for the changes that replay the store's contents at
	// Subscribe time (Existed and Deleted are then false).
	Initial bool
}

// SubscribeOption configures one subscription.
type SubscribeOption func(*subConfig)

type subConfig struct {
	skipExisting bool
}

// SkipExisting makes a subscription start with the changes that come after
// Subscribe, instead of first replaying the store's contents as Initial
// changes. Default: the contents are replayed.
func SkipExisting() SubscribeOption { return func(c *subConfig) { c.skipExisting = true } }

// Subscribe calls fn for every change of the store, until ctx ends or the
// store is closed.
//
// Delivery:
//   - First, unless SkipExisting, one Initial change per key the store holds
//     at that moment; then every later change. Nothing is missed or
//     repeated in between: the contents are taken and the subscription
//     registered in one step.
//   - fn runs on a goroutine of its own, one change at a time, in the order
//     the store applied them (offset order within a partition). When fn
//     runs, Get already returns the new value (or a later one).
//   - The store never waits for a subscriber. Changes wait in a queue that
//     holds at most one change per key: when a key changes again before its
//     previous change was delivered, the two are merged in place (Old from
//     the first, New from the last; a key added then deleted meanwhile is
//     dropped). So a slow subscriber skips intermediate values, exactly as a
//     compacted topic does, but always ends with every key's latest value,
//     and its queue is bounded by the number of keys. The
//     subscriber_pending metric shows how far behind subscribers are.
//   - A panic in fn is recovered, logged and counted
//     (subscriber_panics_total); delivery goes on with the next change.
//   - When ctx ends or the store closes, delivery stops after the call under
//     way; undelivered changes are dropped. Close waits for that call.
//
// fn may call the store's methods, including Put and Delete on this or
// another store (the countries → time zones pattern). Subscribe returns
// ErrClosed on a closed store.
func (s *Store[K, V]) Subscribe(ctx context.Context, fn func(Change[K, V]), opts ...SubscribeOption) error {
	if fn == nil {
		return &ConfigError{Pkg: "kvstore", Sentinel: ErrInvalidConfig, Field: "Subscribe", Rule: "fn must not be nil"}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var cfg subConfig
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	sub := &subscriber[K, V]{fn: fn, st: &s.st, pending: map[K]int{}, wake: make(chan struct{}, 1)}
	s.applyMu.Lock()
	if s.closed {
		s.applyMu.Unlock()
		return fmt.Errorf("kvstore %q: Subscribe: %w", s.cfg.name, ErrClosed)
	}
	if !cfg.skipExisting {
		sub.initial = make([]Change[K, V], 0, s.st.entries.Load())
		var buf []kv[K, V]
		for i := range shardCount {
			buf = s.tab.appendShard(i, buf[:0])
			for _, p := range buf {
				sub.initial = append(sub.initial, Change[K, V]{Key: p.k, New: p.v, Initial: true})
			}
		}
		s.st.subPending.Add(int64(len(sub.initial)))
	}
	s.subs = append(s.subs, sub)
	s.subsWG.Add(1)
	s.applyMu.Unlock()
	s.st.subscribers.Add(1)
	go s.deliver(ctx, sub)
	return nil
}

// deliver is a subscription's goroutine.
func (s *Store[K, V]) deliver(ctx context.Context, sub *subscriber[K, V]) {
	defer s.subsWG.Done()
	defer s.unsubscribe(sub)
	stopped := func() bool {
		select {
		case <-ctx.Done():
			return true
		case <-s.closing:
			return true
		default:
			return false
		}
	}
	for i := range sub.initial {
		if stopped() {
			return
		}
		c := sub.initial[i]
		sub.initial[i] = Change[K, V]{}
		s.st.subPending.Add(-1)
		s.call(sub, c)
	}
	sub.initial = nil
	for {
		for {
			c, ok := sub.pop()
			if !ok {
				break
			}
			if stopped() {
				return
			}
			s.call(sub, c)
		}
		select {
		case <-sub.wake:
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		}
	}
}

func (s *Store[K, V]) call(sub *subscriber[K, V], c Change[K, V]) {
	defer func() {
		if r := recover(); r != nil {
			s.st.subPanics.Add(1)
			s.log.Error("subscriber panicked; delivery goes on with the next change",
				zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
		}
	}()
	sub.fn(c)
}

// unsubscribe removes sub from the store and forgets its pending changes.
func (s *Store[K, V]) unsubscribe(sub *subscriber[K, V]) {
	s.applyMu.Lock()
	for i, x := range s.subs {
		if x == sub {
			s.subs = append(s.subs[:i:i], s.subs[i+1:]...)
			break
		}
	}
	s.applyMu.Unlock()
	sub.mu.Lock()
	left := len(sub.queue) - sub.head + len(sub.initial)
	sub.queue, sub.pending, sub.initial = nil, nil, nil
	sub.mu.Unlock()
	s.st.subPending.Add(-int64(left))
	s.st.subscribers.Add(-1)
}

// subscriber is one subscription's queue: a FIFO of changes with at most one
// change per key (pending maps a key to its change's index in queue).
type subscriber[K comparable, V any] struct {
	fn      func(Change[K, V])
	st      *stats
	initial []Change[K, V] // the replay, delivered first; owned by the delivery goroutine
	wake    chan struct{}  // capacity 1: "the queue may have changes"

	mu      sync.Mutex
	queue   []Change[K, V]
	head    int // queue[head:] are pending
	pending map[K]int
}

// push queues c, merging it with the key's pending change if there is one.
// It never blocks on the subscriber.
func (s *subscriber[K, V]) push(c Change[K, V]) {
	s.mu.Lock()
	if s.pending == nil { // unsubscribed
		s.mu.Unlock()
		return
	}
	if i, ok := s.pending[c.Key]; ok {
		q := &s.queue[i]
		q.New, q.Deleted = c.New, c.Deleted
		s.mu.Unlock()
		return
	}
	if s.head > 1024 && s.head > len(s.queue)/2 {
		s.compact()
	}
	s.pending[c.Key] = len(s.queue)
	s.queue = append(s.queue, c)
	s.mu.Unlock()
	s.st.subPending.Add(1)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// compact moves the pending changes to the front of the queue.
func (s *subscriber[K, V]) compact() {
	n := copy(s.queue, s.queue[s.head:])
	clear(s.queue[n:])
	s.queue = s.queue[:n]
	s.head = 0
	for i := range s.queue {
		s.pending[s.queue[i].Key] = i
	}
}

// pop takes the oldest pending change. Merged changes that cancel out (a key
// added and deleted while pending) are dropped.
func (s *subscriber[K, V]) pop() (Change[K, V], bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.head < len(s.queue) {
		c := s.queue[s.head]
		s.queue[s.head] = Change[K, V]{}
		s.head++
		delete(s.pending, c.Key)
		if s.head == len(s.queue) {
			s.queue, s.head = s.queue[:0], 0
		}
		s.st.subPending.Add(-1)
		if c.Deleted && !c.Existed {
			continue
		}
		return c, true
	}
	return Change[K, V]{}, false
}
