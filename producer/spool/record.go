package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// What a spooled record looks like on disk (the payload of a wal frame).
const (
	formatVersion = 1
	// flagAttempted: the record was first produced directly and spooled
	// when Kafka did not acknowledge it in time; that first attempt may
	// still be written, so relaying it may duplicate it.
	flagAttempted = 1
)

type stored struct {
	flags   byte
	created time.Time // when Produce was called: the record's timestamp
	rec     *kgo.Record
	reason  string // dead records only: why
}

func encode(s stored) []byte {
	r := s.rec
	b := make([]byte, 0, 32+len(r.Topic)+len(r.Key)+len(r.Value)+len(s.reason))
	b = append(b, formatVersion, s.flags)
	b = binary.AppendVarint(b, s.created.UnixNano())
	b = appendBytes(b, []byte(r.Topic), false)
	b = appendBytes(b, r.Key, true)
	b = appendBytes(b, r.Value, true)
	b = binary.AppendUvarint(b, uint64(len(r.Headers)))
	for _, h := range r.Headers {
		b = appendBytes(b, []byte(h.Key), false)
		b = appendBytes(b, h.Value, true)
	}
	return appendBytes(b, []byte(s.reason), false)
}

// appendBytes writes a length (plus one when nil is distinct from empty) and
// the bytes.
func appendBytes(b, p []byte, nullable bool) []byte {
	n := uint64(len(p))
	if nullable {
		if p == nil {
			return binary.AppendUvarint(b, 0)
		}
		n++
	}
	return append(binary.AppendUvarint(b, n), p...)
}

var errCorrupt = errors.New("spool: undecodable spooled record")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(nullable bool) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if nullable {
		if n == 0 {
			return nil
		}
		n--
	}
	if uint64(len(d.b)) < n {
		d.err = errCorrupt
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func decode(p []byte) (stored, error) {
	if len(p) < 2 || p[0] != formatVersion {
		return stored{}, fmt.Errorf("%w: unknown format", errCorrupt)
	}
	s := stored{flags: p[1], rec: &kgo.Record{}}
	d := &decoder{b: p[2:]}
	ns, n := binary.Varint(d.b)
	if n <= 0 {
		return stored{}, errCorrupt
	}
	d.b = d.b[n:]
	s.created = time.Unix(0, ns)
	s.rec.Topic = string(d.bytes(false))
	s.rec.Key = d.bytes(true)
	s.rec.Value = d.bytes(true)
	nh := d.uvarint()
	if d.err == nil && nh > uint64(len(d.b)) {
		d.err = errCorrupt
	}
	for i := uint64(0); i < nh && d.err == nil; i++ {
		k := string(d.bytes(false))
		s.rec.Headers = append(s.rec.Headers, kgo.RecordHeader{Key: k, Value: d.bytes(true)})
	}
	s.reason = string(d.bytes(false))
	if d.err != nil {
		return stored{}, d.err
	}
	s.rec.Timestamp = s.created
	return s, nil
}

// IDHeader is the header every record produced through a spool Producer
// carries: a value unique to the record, the same on each copy of it that
// reaches Kafka, for consumers to drop duplicates.
const IDHeader = "whippet-record-id"

// RecordID returns r's IDHeader value, or "" if it has none.
func RecordID(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == IDHeader {
			return string(h.Value)
		}
	}
	return ""
}
