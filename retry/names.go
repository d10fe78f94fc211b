package retry

import "strconv"

// TopicName is the retry topic of the n-th non-blocking retry (from 0) of
// records of topic consumed by group: "<topic>-<group>-retry-<n>", the names
// Greyhound uses, so a group migrating from Greyhound drains its old topics.
func TopicName(topic, group string, n int) string {
	return topic + "-" + group + "-retry-" + strconv.Itoa(n)
}

// DLQTopicName is the dead-letter topic of records of topic consumed by
// group: "<topic>-<group>-dlq".
func DLQTopicName(topic, group string) string { return topic + "-" + group + "-dlq" }
