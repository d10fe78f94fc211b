package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/internal/wal"
)

// DeadRecord is a record the relay set aside instead of delivering it.
type DeadRecord struct {
	// Record is the record as it was produced (with its IDHeader).
	Record *kgo.Record
	// Spooled is when it was produced.
	Spooled time.Time
	// Reason says why it is dead: expired, or refused by Kafka.
	Reason string
}

// Info describes a spool directory not in use by a process.
type Info struct {
	// Records spooled and not yet relayed; Bytes of their files.
	Records int64
	Bytes   int64
	// Oldest is when the oldest record held was produced (zero if none).
	Oldest time.Time
	// PossibleDuplicates among Records (see Recovery).
	PossibleDuplicates int64
	// Dead are the records set aside as dead, oldest first.
	Dead []DeadRecord
	// Dropped lists torn parts cut off while opening.
	Dropped []wal.Dropped
}

// Inspect reads the spool in dir (which no Producer may have open: it
// returns ErrLocked then), recovering torn tails as New does.
func Inspect(dir string) (Info, error) {
	var info Info
	if _, err := os.Stat(dir); err != nil {
		return info, fmt.Errorf("spool: %w", err)
	}
	release, err := lockDir(dir)
	if err != nil {
		return info, err
	}
	defer release()
	st, err := openState(filepath.Join(dir, "state"))
	if err != nil {
		return info, err
	}
	defer st.close()
	l, rec, err := wal.Open(filepath.Join(dir, "log"), wal.Options{NextSeq: st.acked + 1})
	if err != nil {
		return info, fmt.Errorf("spool: %w", err)
	}
	defer l.Close()
	info.Dropped = rec.Dropped
	err = each(l, st.acked+1, func(seq uint64, s stored) {
		info.Records++
		if info.Oldest.IsZero() {
			info.Oldest = s.created
		}
		if seq <= st.sending || s.flags&flagAttempted != 0 {
			info.PossibleDuplicates++
		}
	})
	if err != nil {
		return info, err
	}
	info.Bytes = l.Stats().Bytes
	dead, drec, err := wal.Open(filepath.Join(dir, "dead"), wal.Options{})
	if err != nil {
		return info, fmt.Errorf("spool: %w", err)
	}
	defer dead.Close()
	info.Dropped = append(info.Dropped, drec.Dropped...)
	err = each(dead, 1, func(_ uint64, s stored) {
		info.Dead = append(info.Dead, DeadRecord{Record: s.rec, Spooled: s.created, Reason: s.reason})
	})
	return info, err
}

// each calls fn for every decodable record of l from seq on.
func each(l *wal.Log, from uint64, fn func(uint64, stored)) error {
	c := l.Cursor(from)
	defer c.Close()
	for {
		es, err := c.Next(1000)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if len(es) == 0 {
			return nil
		}
		for _, e := range es {
			if s, err := decode(e.Payload); err == nil {
				fn(e.Seq, s)
			}
		}
	}
}

// Dead returns the records set aside as dead in the spool's directory,
// oldest first. They stay there until an operator removes the directory's
// dead/ folder (after replaying them, say).
func (p *Producer) Dead() ([]DeadRecord, error) {
	var out []DeadRecord
	err := each(p.dead, 1, func(_ uint64, s stored) {
		out = append(out, DeadRecord{Record: s.rec, Spooled: s.created, Reason: s.reason})
	})
	return out, err
}
