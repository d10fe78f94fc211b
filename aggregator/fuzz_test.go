package aggregator

import (
	"errors"
	"math/bits"
	"strconv"
	"strings"
	"testing"

	"github.com/whippet-go/whippet/codec"
)

// FuzzCommands applies arbitrary sequences of Start and Done commands, as
// the processor reads them from the commands topic (the argument is
// untrusted text), to a batch's progress, which goes through the store's
// JSON codec between commands as it does between transactions. It checks
// that a command is either rejected with ErrBadTask, leaving the progress
// as it was, or applied; that Done always counts the distinct tasks
// reported and never exceeds a known total; and that the bitmap never
// grows past MaxTasks bits, whatever task number a command carries.
//
// spec is one command a line: "s<arg>" for Start, "d<arg>" for Done.
func FuzzCommands(f *testing.F) {
	f.Add("s3\nd0\nd1\nd1\nd2")
	f.Add("d5\nd0\ns6\nd1\nd2\nd3\nd4")
	f.Add("d9\ns4")
	f.Add("s3\ns4\nd3\nd-1\ndx\ns0\ns-2\ns")
	f.Add("s1048576\nd1048575")
	// Found by review, kept as regressions: a task number with no Start
	// made the processor allocate task/8 bytes (137 GB for 2^40), and
	// totals beyond what one store record can hold.
	f.Add("d1099511627776")
	f.Add("s1099511627776\nd1099511627775")
	f.Add("d1048576\ns1048577")

	codec := codec.JSON[Progress]()
	f.Fuzz(func(t *testing.T, spec string) {
		var p Progress
		reported := map[int]bool{}
		for line := range strings.SplitSeq(spec, "\n") {
			if line == "" {
				continue
			}
			before := p
			var next Progress
			var err error
			switch line[0] {
			case 's':
				next, err = start("b", p, []byte(line[1:]))
			case 'd':
				next, err = done("b", p, []byte(line[1:]))
			default:
				continue
			}
			if err != nil {
				if !errors.Is(err, ErrBadTask) {
					t.Fatalf("%q: error %v does not match ErrBadTask", line, err)
				}
				if next.Total != before.Total || next.Done != before.Done || string(next.Bits) != string(before.Bits) {
					t.Fatalf("%q was rejected but changed the progress: %+v -> %+v", line, before, next)
				}
				continue
			}
			if line[0] == 'd' {
				task, _ := strconv.Atoi(line[1:]) // accepted, so a number
				if !next.Has(task) {
					t.Fatalf("%q accepted but task %d is not marked", line, task)
				}
				reported[task] = true
			}
			b, err := codec.Encode(next)
			if err != nil {
				t.Fatal(err)
			}
			if p, err = codec.Decode(b); err != nil {
				t.Fatal(err)
			}
			if len(p.Bits) > MaxTasks/8 {
				t.Fatalf("bitmap of %d bytes after %q", len(p.Bits), line)
			}
			n := 0
			for _, x := range p.Bits {
				n += bits.OnesCount8(x)
			}
			if n != p.Done || p.Done != len(reported) || (p.Total > 0 && p.Done > p.Total) || p.Total > MaxTasks {
				t.Fatalf("after %q: %+v counts %d tasks, %d bits set, %d reported", line, p, p.Done, n, len(reported))
			}
		}
	})
}
