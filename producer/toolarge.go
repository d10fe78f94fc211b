package producer

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/internal/toolarge"
)

// ErrRecordTooLarge is matched by the error of a record Kafka did not take
// because of its size: larger than MaxBatchBytes (franz-go refuses it before
// sending) or than the topic's max.message.bytes (the broker refuses it).
// The error is a *RecordTooLargeError and also matches franz-go's
// kerr.MessageTooLarge. The consumer's forwards to retry and dead-letter
// topics report the same error.
var ErrRecordTooLarge = toolarge.ErrRecordTooLarge

// RecordTooLargeError reports a record Kafka did not take because of its
// size: the record's size (uncompressed, in a batch of its own, as Kafka
// counts it), the client's batch limit and, when it could be read, the
// topic's max.message.bytes. Its message says which limit the record broke,
// e.g. `record too large: 3120 bytes is more than max.message.bytes of
// topic "orders" (1000)`. When the record fits both limits, the batch it was
// sent in did not: keep MaxBatchBytes at or below the topic's
// max.message.bytes. Reading the topic's limit takes a request to Kafka
// (cached for 30s), so the callback of such a record may come up to 5s
// later.
type RecordTooLargeError = toolarge.Error

// tooLarge turns franz-go's kerr.MessageTooLarge for r into a
// *RecordTooLargeError; other errors pass through.
func (p *Producer) tooLarge(r *kgo.Record, err error) error {
	limit := "MaxBatchBytes"
	if !p.owned {
		limit = "the client's kgo.ProducerBatchMaxBytes"
	}
	return toolarge.Explain(p.cl, limit, r, err)
}
