package admin

import (
	"time"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/internal/jsonbytes"
)

// The types below are the JSON the API answers with (and, for the requests,
// what it reads), exported so that Go programs, the whippet CLI among them,
// can decode it. Bytes from Kafka (keys, values, header values) are JSON
// strings when they are valid UTF-8 and base64 otherwise, with a sibling
// "*_encoding": "base64" field saying so; a null key or value is JSON null.
// Times are RFC 3339 and left out when unknown.

// Info is GET /api/info: what the handler serves and who is asking.
type Info struct {
	// Title is the service's name (Title option).
	Title string `json:"title"`
	// ReadOnly is true when the handler has no authorization hook: every
	// action is refused.
	ReadOnly bool `json:"read_only"`
	// Who is who the authorization hook says is asking; "" without a hook.
	Who string `json:"who"`
	// Payloads is true when the asker may read payloads (keys, values,
	// header values, error texts: ActionViewPayloads); false without a
	// hook.
	Payloads bool `json:"payloads"`
	// Consumers are the registered consumers' names.
	Consumers []string `json:"consumers"`
	// DLQ is true when the dead-letter views are enabled (DLQ option).
	DLQ bool `json:"dlq"`
	// RefreshMillis is how often the page refreshes (Refresh option).
	RefreshMillis int64 `json:"refresh_ms"`
}

// ConsumerView is one registered consumer: GET /api/consumers (a list) and
// GET /api/consumers/{name}.
type ConsumerView struct {
	// Name is the name it was registered under.
	Name string `json:"name"`
	// Group and Topics are the consumer's group and subscribed topics
	// (consumer.Consumer.Group and Topics; with consumer.TopicRegex, the
	// topics its patterns match now).
	Group  string   `json:"group"`
	Topics []string `json:"topics"`
	// DLQTopics are the dead-letter topics of its topics.
	DLQTopics []string `json:"dlq_topics"`
	// Paused is true when the whole consumer was paused through this
	// handler (ActionPauseConsumer) and not resumed since.
	Paused bool `json:"paused"`
	// InFlight is the number of handlers running now, read from the
	// Metrics gatherer; null when unknown.
	InFlight *int64 `json:"in_flight"`
	// Lag and Buffered add up the partitions' Lag and Buffered.
	Lag      int64 `json:"lag"`
	Buffered int   `json:"buffered"`
	// BlockedPartitions counts the partitions held up by a record, not
	// counting those where only retries wait for their due time.
	BlockedPartitions int `json:"blocked_partitions"`
	// Partitions are the partitions assigned to it now, by topic and
	// partition.
	Partitions []PartitionView `json:"partitions"`
}

// PartitionView is one assigned partition (GET
// /api/consumers/{name}/partitions).
type PartitionView struct {
	// Topic and Partition name the partition.
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// NextOffset is the first offset not yet finished (what a commit now
	// would store); -1 before the first fetch.
	NextOffset int64 `json:"next_offset"`
	// Lag is the high watermark minus NextOffset, as of the last fetch.
	Lag int64 `json:"lag"`
	// Buffered counts the records fetched and not yet finished: the
	// partition's records in flight.
	Buffered int `json:"buffered"`
	// Paused is true when an operator paused the partition or the consumer.
	Paused bool `json:"paused"`
	// Backpressure is true while fetching is paused because the partition's
	// buffer is full.
	Backpressure bool `json:"backpressure"`
	// SkipAll is true when skip-all was set on the partition through this
	// handler (ActionSkipAll) and not undone (ActionBlock).
	SkipAll bool `json:"skip_all"`
	// Blocked are the records that hold the partition up (more than one only
	// in key-parallel mode); empty when it flows.
	Blocked []BlockedView `json:"blocked"`
}

// BlockedView is a record that holds up its partition (GET
// /api/consumers/{name}/blocked lists them).
type BlockedView struct {
	// Consumer is the registered consumer's name.
	Consumer string `json:"consumer"`
	// Topic, Partition and Offset locate the record.
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	// Key is the record's key (see the encoding note above).
	Key         *string `json:"key"`
	KeyEncoding string  `json:"key_encoding,omitempty"`
	// Error is the last error: the handler's, or the failing forward's.
	Error string `json:"error"`
	// Attempts counts the handling attempts (or failed forwards) so far.
	Attempts int `json:"attempts"`
	// Since is when the record started to block; NextAttempt when it is
	// tried again.
	Since       time.Time `json:"since,omitzero"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// Forwarding is true when the record is done with but its forward to a
	// retry or dead-letter topic fails; such a record cannot be skipped.
	Forwarding bool `json:"forwarding"`
	// PayloadHidden is true when the asker may not read payloads
	// (ActionViewPayloads): Key is null and Error empty.
	PayloadHidden bool `json:"payload_hidden,omitempty"`
	// Waiting is true when the record is a retry waiting for its due time
	// (NextAttempt); skipping it dead-letters it (consumer.BlockedRecord).
	Waiting bool `json:"waiting"`
}

// ActionRecord is one entry of the action log (GET /api/actions), and the
// answer to a successful action.
type ActionRecord struct {
	// At is when the action was done.
	At time.Time `json:"at"`
	// Who is who the authorization hook named.
	Who string `json:"who"`
	// Action is one of the Action* names.
	Action string `json:"action"`
	// Consumer, Topic and Partition are the target; Partition is -1 when
	// the target is not a partition.
	Consumer  string `json:"consumer,omitempty"`
	Topic     string `json:"topic,omitempty"`
	Partition int32  `json:"partition"`
	// Assigned is false when a partition action targeted a partition not
	// assigned to this consumer now: the consumer keeps the setting for
	// when it is.
	Assigned bool `json:"assigned"`
	// Detail says what was done, in words.
	Detail string `json:"detail"`
	// Seeked are the partitions a seek (ActionSeek) moved.
	Seeked []SeekedPartition `json:"seeked,omitempty"`
	// Error is why the action failed; "" if it succeeded.
	Error string `json:"error,omitempty"`
}

// SeekRequest is the body of POST .../seek: exactly one of Offset, Time and
// End says where the partitions go (consumer.SeekOffset, SeekTime, SeekEnd).
type SeekRequest struct {
	// Offset moves to this offset, kept within each partition's records.
	Offset *int64 `json:"offset,omitempty"`
	// Time moves each partition to its first record at or after this time:
	// RFC 3339, or a duration ago ("90m", "2h", "7d").
	Time string `json:"time,omitempty"`
	// End moves to the end: the records there now are not handled.
	End bool `json:"end,omitempty"`
}

// SeekedPartition is one partition a seek moved (consumer.SeekResult).
type SeekedPartition struct {
	// Partition is the partition number (of ActionRecord.Topic).
	Partition int32 `json:"partition"`
	// From is the first offset it had not finished before the seek (-1 if
	// none was fetched yet); To where it goes on, committed.
	From int64 `json:"from"`
	To   int64 `json:"to"`
	// Abandoned are the offsets of the records that blocked it: neither
	// handled nor dead-lettered by the seek (handled again if To is at or
	// before them).
	Abandoned []int64 `json:"abandoned,omitempty"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	// Error says what went wrong.
	Error string `json:"error"`
	// Param names the bad parameter of a 400 answer.
	Param string `json:"param,omitempty"`
}

// DLQTopicView is one dead-letter topic (GET /api/dlq lists them).
type DLQTopicView struct {
	// Topic is the dead-letter topic.
	Topic string `json:"topic"`
	// Consumer, Group and Source are the registered consumer, its group and
	// the consumed topic the dead letters come from; "" for topics given to
	// DLQTopics.
	Consumer string `json:"consumer,omitempty"`
	Group    string `json:"group,omitempty"`
	Source   string `json:"source,omitempty"`
	// Exists is false when the topic does not exist (yet).
	Exists bool `json:"exists"`
	// Records is the sum over the partitions of the end offset minus the
	// start offset: the records the topic holds (transaction markers, if
	// any, count too).
	Records int64 `json:"records"`
	// Error is why the offsets could not be read, if they could not.
	Error string `json:"error,omitempty"`
}

// DLQPage is one page of dead-letter records (GET /api/dlq/{topic}).
type DLQPage struct {
	// Topic is the dead-letter topic.
	Topic string `json:"topic"`
	// Records are the selected records, oldest first (see dlq.Page).
	Records []DLQRecord `json:"records"`
	// Next, if not empty, continues the listing: pass it as the cursor
	// parameter with the same filter.
	Next string `json:"next,omitempty"`
}

// DLQRecord is one dead-letter record: the JSON view the dlq package defines
// (dlq.RecordView), which `whippet dlq list|show -json` prints too. In a
// listing, values longer than 4 KiB are cut (ValueTruncated); GET
// /api/dlq/{topic}/{partition}/{offset} gives the whole record.
type DLQRecord = dlq.RecordView

// Header is a record header (dlq.HeaderView).
type Header = dlq.HeaderView

// ReplayRequest is the body of POST /api/dlq/{topic}/replay. Exactly one of
// Positions, All and Filter selects what to replay.
type ReplayRequest struct {
	// Positions are the records to replay, in this order.
	Positions []PartitionOffset `json:"positions,omitempty"`
	// All replays every record of the topic.
	All bool `json:"all,omitempty"`
	// Filter replays the records it selects.
	Filter *ReplayFilter `json:"filter,omitempty"`
	// DryRun only reports what would be replayed.
	DryRun bool `json:"dry_run,omitempty"`
	// To, if set, is the topic every selected record is replayed to,
	// whatever topic its headers name. Without it, records go back only to
	// the topic the dead-letter topic belongs to, and one whose headers name
	// another is skipped (SkippedRecord.OtherTopic). The authorization hook
	// sees it as Action.ReplayTo.
	To string `json:"to,omitempty"`
}

// PartitionOffset locates a record in the topic of the request.
type PartitionOffset struct {
	// Partition and Offset are the record's partition and offset.
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// ReplayFilter selects records as the listing's parameters do (see
// dlq.Filter); every field set must match, and at least one must be set.
type ReplayFilter struct {
	// Key selects records whose key is exactly this text.
	Key *string `json:"key,omitempty"`
	// Error selects records whose last error contains this text.
	Error string `json:"error,omitempty"`
	// Reason selects records dead-lettered for this reason (exhausted,
	// non-retriable, decode or skipped).
	Reason string `json:"reason,omitempty"`
	// Partitions restricts the search to these partitions.
	Partitions []int32 `json:"partitions,omitempty"`
	// Since and Until select by when records were dead-lettered: RFC 3339,
	// or a duration ago ("90m", "2h", "7d").
	Since string `json:"since,omitempty"`
	Until string `json:"until,omitempty"`
}

// ReplayResponse is what a replay did (or, in a dry run, would do).
type ReplayResponse struct {
	// Topic is the dead-letter topic.
	Topic string `json:"topic"`
	// DryRun reports whether this was a dry run.
	DryRun bool `json:"dry_run"`
	// Replayed are the records produced back to their original topic.
	Replayed []ReplayedRecord `json:"replayed"`
	// Skipped are the selected records that were not replayed, and why.
	Skipped []SkippedRecord `json:"skipped"`
}

// ReplayedRecord is one replayed record: From is its dead-letter position,
// To where it was written ("<topic>/<partition>/<offset>"; only the topic
// in a dry run).
type ReplayedRecord struct {
	// From is the dead-letter record's position.
	From string `json:"from"`
	// To is where it was written.
	To string `json:"to"`
}

// SkippedRecord is a selected record that was not replayed.
type SkippedRecord struct {
	// From is the dead-letter record's position.
	From string `json:"from"`
	// Reason says why it was not replayed.
	Reason string `json:"reason"`
	// OtherTopic is true when its headers name another topic than the one
	// the dead-letter topic belongs to: ReplayRequest.To replays it to a
	// topic the operator names.
	OtherTopic bool `json:"other_topic,omitempty"`
}

// PurgeRequest is the body of POST /api/dlq/{topic}/purge: exactly one of All
// and Before. Kafka deletes whole prefixes of partitions, so records cannot
// be purged by key, error or reason.
type PurgeRequest struct {
	// All purges every record (up to the end of each partition now).
	All bool `json:"all,omitempty"`
	// Before purges the records dead-lettered before this time: RFC 3339,
	// or a duration ago ("90m", "2h", "7d").
	Before string `json:"before,omitempty"`
	// DryRun only reports what would be deleted.
	DryRun bool `json:"dry_run,omitempty"`
}

// PurgeResponse is what a purge deleted (or, in a dry run, would delete).
type PurgeResponse struct {
	// Topic is the dead-letter topic.
	Topic string `json:"topic"`
	// Scope is "all" or "before <RFC 3339 time>".
	Scope string `json:"scope"`
	// DryRun reports whether this was a dry run.
	DryRun bool `json:"dry_run"`
	// Deleted is the number of records deleted (or that would be).
	Deleted int64 `json:"deleted"`
	// Partitions has one entry per partition.
	Partitions []PartitionPurge `json:"partitions"`
}

// PartitionPurge is what a purge did in one partition: the offsets
// [From, To) were deleted.
type PartitionPurge struct {
	// Partition is the partition number.
	Partition int32 `json:"partition"`
	// From is where the partition started, To where it starts now.
	From int64 `json:"from"`
	To   int64 `json:"to"`
	// Deleted is To - From.
	Deleted int64 `json:"deleted"`
}

// maxListedValue is how much of a value a listing shows.
const maxListedValue = 4 << 10

// hidePayload leaves the key and error text out of a blocked record
// (ActionViewPayloads).
func (v *BlockedView) hidePayload() {
	v.Key, v.KeyEncoding, v.Error, v.PayloadHidden = nil, "", "", true
}

// hidePayloads hides the payloads of a consumer's blocked records.
func (v *ConsumerView) hidePayloads() {
	for i := range v.Partitions {
		for j := range v.Partitions[i].Blocked {
			v.Partitions[i].Blocked[j].hidePayload()
		}
	}
}

func blockedView(name string, b *consumer.BlockedRecord) BlockedView {
	v := BlockedView{Consumer: name, Topic: b.Topic, Partition: b.Partition, Offset: b.Offset,
		Error: b.Error, Attempts: b.Attempts, Since: b.Since, NextAttempt: b.NextAttempt, Forwarding: b.Forwarding,
		Waiting: b.Waiting}
	v.Key, v.KeyEncoding = jsonbytes.Encode(b.Key)
	return v
}
