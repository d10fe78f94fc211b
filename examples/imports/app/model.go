package app

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Contact is one row of an import's CSV.
type Contact struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Job is one slice of an import: the value of a record of the jobs topic.
type Job struct {
	// Import is the import's id, "imp-<16 hex digits>".
	Import string `json:"import"`
	// Channel is the notification channel of the browser that uploaded it.
	Channel string `json:"channel"`
	// Job is the job's number, 0 to Jobs-1: the aggregator's task number.
	Job int `json:"job"`
	// Jobs is the number of jobs of the import.
	Jobs     int       `json:"jobs"`
	Contacts []Contact `json:"contacts"`
}

// Batch is the job's aggregator batch id (see BatchID).
func (j Job) Batch() string { return BatchID(j.Import, j.Channel) }

// Kinds of Notification.
const (
	JobTaken        = "job-taken"
	JobDone         = "job-done"
	ImportCompleted = "import-completed"
)

// Notification is the payload of every notification of an import, as the
// page and the demo's client read it.
type Notification struct {
	// Kind is JobTaken, JobDone or ImportCompleted.
	Kind   string `json:"kind"`
	Import string `json:"import"`
	// Jobs is the number of jobs of the import, in every notification, so
	// that a page can draw the import from whichever notification comes
	// first (the jobs service's answer may come after the first ones).
	Jobs int `json:"jobs"`
	// Job, Importer and Contacts: JobTaken and JobDone (Job is 0 otherwise).
	Job      int    `json:"job"`
	Importer string `json:"importer,omitempty"`
	Contacts int    `json:"contacts,omitempty"`
	// Imported and Rejected: JobDone (rejected: rows without a valid
	// email address).
	Imported int `json:"imported,omitempty"`
	Rejected int `json:"rejected,omitempty"`
}

// BatchID is the aggregator's batch id of an import: "<import>@<channel>".
// The completion event carries only the batch id; the channel in it is
// what lets the completions service notify the browser without keeping any
// state of its own.
func BatchID(importID, channel string) string { return importID + "@" + channel }

// ParseBatchID splits a BatchID; ok is false for a batch id that is not an
// import's.
func ParseBatchID(batch string) (importID, channel string, ok bool) {
	importID, channel, ok = strings.Cut(batch, "@")
	return importID, channel, ok && importIDRule.MatchString(importID) && ValidChannel(channel) == nil
}

var (
	importIDRule = regexp.MustCompile(`^imp-[0-9a-f]{16}$`)
	channelRule  = regexp.MustCompile(`^browser-[0-9a-f]{32}$`)
)

// ErrChannel is matched by ValidChannel's errors.
var ErrChannel = errors.New("imports: invalid channel")

// ValidChannel checks a channel id: "browser-<32 hex digits>", a random id
// the page makes when it opens. It is the demo's authorization rule for the
// gateways and the jobs service alike; a real service checks instead that
// the request's session owns the channel.
func ValidChannel(ch string) error {
	if !channelRule.MatchString(ch) {
		return fmt.Errorf("%w %q: want browser-<32 hex digits>", ErrChannel, ch)
	}
	return nil
}

// NewChannel returns a new random channel id, as the page makes one.
func NewChannel() string { return "browser-" + randomHex(16) }

func newImportID() string { return "imp-" + randomHex(8) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
