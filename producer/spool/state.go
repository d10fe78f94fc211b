package spool

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
)

// state is the relay's durable progress: every record with a sequence
// number ≤ acked was acknowledged by Kafka (or set aside as dead), and the
// relay may have sent records up to sending. After a crash, the records in
// (acked, sending] are sent again: they are the possible duplicates.
//
// It is written in place into one of two 512-byte slots, alternately, with
// a generation and a CRC, so a torn write leaves the other slot good.
type state struct {
	f       *os.File
	gen     uint64
	acked   uint64
	sending uint64
}

const slotSize = 512

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func openState(path string) (*state, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("spool: state: %w", err)
	}
	s := &state{f: f}
	for slot := range 2 {
		var b [28]byte
		if n, _ := f.ReadAt(b[:], int64(slot*slotSize)); n < len(b) {
			continue
		}
		if crc32.Checksum(b[:24], crcTable) != binary.LittleEndian.Uint32(b[24:]) {
			continue
		}
		if gen := binary.LittleEndian.Uint64(b[0:]); gen > s.gen {
			s.gen = gen
			s.acked = binary.LittleEndian.Uint64(b[8:])
			s.sending = binary.LittleEndian.Uint64(b[16:])
		}
	}
	if s.sending < s.acked {
		s.sending = s.acked
	}
	return s, nil
}

// save makes acked and sending durable.
func (s *state) save(acked, sending uint64) error {
	var b [28]byte
	binary.LittleEndian.PutUint64(b[0:], s.gen+1)
	binary.LittleEndian.PutUint64(b[8:], acked)
	binary.LittleEndian.PutUint64(b[16:], sending)
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], crcTable))
	if _, err := s.f.WriteAt(b[:], int64(((s.gen+1)%2)*slotSize)); err != nil {
		return fmt.Errorf("spool: state: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("spool: state: %w", err)
	}
	s.gen++
	s.acked, s.sending = acked, sending
	return nil
}

func (s *state) close() error { return s.f.Close() }
