package kvstore

import (
	"fmt"
	"reflect"
	"testing"
)

// The applier applies each key's ops in order, whichever shards and
// goroutines they land on, and reports what each key held before.
func TestApplierKeepsPerKeyOrder(t *testing.T) {
	for _, n := range []int{10, parallelApplyMin * 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			tab := newTable[string, int]()
			var a applier[string, int]
			want := map[string]int{}
			var ops []op[string, int]
			for i := range n {
				k := fmt.Sprint("k", i%97)
				del := i%7 == 3
				ops = append(ops, op[string, int]{k: k, v: i, size: 10, del: del, shard: tab.index(k)})
			}
			entries, bytes := a.apply(tab, ops)
			// Replay sequentially to check the old values the applier saw.
			seq := map[string]int{}
			for i, o := range ops {
				old, existed := seq[o.k]
				if existed != ops[i].existed || existed && old != ops[i].old.v {
					t.Fatalf("op %d (%s): applier saw old %v/%v, want %v/%v", i, o.k, ops[i].old.v, ops[i].existed, old, existed)
				}
				if o.del {
					delete(seq, o.k)
				} else {
					seq[o.k] = o.v
				}
			}
			for k, v := range seq {
				want[k] = v
			}
			if int(entries) != len(want) || bytes != int64(10*len(want)) {
				t.Fatalf("entries %d bytes %d, want %d and %d", entries, bytes, len(want), 10*len(want))
			}
			for k, v := range want {
				if got, ok := tab.get(k); !ok || got != v {
					t.Fatalf("%s = %v %v, want %v", k, got, ok, v)
				}
			}
		})
	}
}

// presize makes room for the record count; rightSize gives it back when the
// keys turned out far fewer (a topic full of duplicates).
func TestPresizeAndRightSize(t *testing.T) {
	tab := newTable[int, int]()
	tab.presize(1 << 20)
	if h := tab.shards[0].hint; h != (1<<20)/shardCount {
		t.Fatalf("hint %d", h)
	}
	var a applier[int, int]
	var ops []op[int, int]
	for i := range 1000 {
		ops = append(ops, op[int, int]{k: i, v: i, size: 1, shard: tab.index(i)})
	}
	a.apply(tab, ops)
	old := tab.shards[0].m
	tab.rightSize()
	if tab.shards[0].hint != 0 {
		t.Fatal("hint not reset")
	}
	if reflect.ValueOf(old).UnsafePointer() == reflect.ValueOf(tab.shards[0].m).UnsafePointer() {
		t.Fatal("an oversized shard was not rebuilt")
	}
	for i := range 1000 {
		if v, ok := tab.get(i); !ok || v != i {
			t.Fatalf("%d lost in rightSize", i)
		}
	}
	tab.presize(1 << 20) // not empty any more: left alone
	if tab.shards[0].hint != 0 {
		t.Fatal("presize resized a map in use")
	}
}
