package consumer

import (
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestTrackerCommitsOnlyFinishedPrefix(t *testing.T) {
	var tr tracker
	recs := make([]*kgo.Record, 5000)
	for i := range recs {
		recs[i] = &kgo.Record{Offset: int64(i * 2)} // gaps, as after compaction
		tr.add(recs[i])
	}
	done := make([]bool, len(recs))
	order := rand.Perm(len(recs))
	high := -1 // index of the last record of the finished prefix
	for _, i := range order {
		done[i] = true
		got := tr.finish(recs[i])
		wantHigh := high
		for wantHigh+1 < len(recs) && done[wantHigh+1] {
			wantHigh++
		}
		switch {
		case wantHigh == high && got != nil:
			t.Fatalf("finishing offset %d returned %d, but offset %d is unfinished", recs[i].Offset, got.Offset, recs[high+1].Offset)
		case wantHigh != high && got != recs[wantHigh]:
			t.Fatalf("finishing offset %d returned %v, want offset %d", recs[i].Offset, got, recs[wantHigh].Offset)
		}
		high = wantHigh
	}
	if high != len(recs)-1 || len(tr.recs) != 0 {
		t.Fatalf("after finishing all: prefix ends at %d, %d still tracked", high, len(tr.recs))
	}
	if tr.finish(&kgo.Record{Offset: 3}) != nil {
		t.Fatal("an untracked record must not move the commit")
	}
}
