package atomicstore

import (
	"bytes"
	"hash/maphash"

	"github.com/twmb/franz-go/pkg/kgo"
)

// outcome is what a command left: its result value and, if it was
// rejected, the reason.
type outcome struct {
	key      uint64 // hash of the command's key: an id is not reused across keys
	value    []byte // nil: the key has no value
	rejected bool
	reason   string
}

// window is the dedup window of one partition: the outcomes of the last n
// command ids applied, the oldest forgotten first.
type window struct {
	n    int
	outs map[string]outcome
	ring []string // ids in the order applied; ring[next] is the oldest once full
	next int
}

func newWindow(n int) *window { return &window{n: n, outs: make(map[string]outcome)} }

func (w *window) get(id string) (outcome, bool) {
	o, ok := w.outs[id]
	return o, ok
}

// add remembers id's outcome, forgetting the oldest id if the window is
// full. An id already there keeps its first outcome.
func (w *window) add(id string, o outcome) {
	if w.n <= 0 {
		return
	}
	if _, ok := w.outs[id]; ok {
		return
	}
	if len(w.ring) < w.n {
		w.ring = append(w.ring, id)
	} else {
		delete(w.outs, w.ring[w.next])
		w.ring[w.next] = id
		w.next = (w.next + 1) % w.n
	}
	w.outs[id] = o
}

var keySeed = maphash.MakeSeed()

func keyHash(k []byte) uint64 { return maphash.Bytes(keySeed, k) }

// duplicateValue encodes an original result for HeaderDuplicate.
func duplicateValue(v []byte) []byte {
	if v == nil {
		return []byte("-")
	}
	return append([]byte("="), v...)
}

// rebuildOutcome returns the outcome a store record read back from the
// store topic carries for its command id, if any: a record that applied or
// rejected a command, or one that answered a duplicate with its original
// result. Answers without an original result (an id reused for another
// key, a result no longer known) carry none.
func rebuildOutcome(r *kgo.Record) (string, outcome, bool) {
	id, ok := header(r, HeaderCommandID)
	if !ok || id == "" {
		return "", outcome{}, false
	}
	o := outcome{key: keyHash(r.Key), value: r.Value}
	o.reason, o.rejected = header(r, HeaderError)
	if dup, ok := header(r, HeaderDuplicate); ok {
		switch {
		case dup == "-":
			o.value = nil
		case len(dup) > 0 && dup[0] == '=':
			o.value = []byte(dup[1:])
		default:
			return "", outcome{}, false
		}
	}
	if o.value != nil {
		// A copy: the window outlives the fetch buffers of the rebuild.
		o.value = bytes.Clone(o.value)
	}
	return id, o, true
}
