package retry

import (
	"strconv"
	"strings"
)

// TopicName is the retry topic of the n-th non-blocking retry (from 0) of
// records of topic consumed by group: "<topic>-<group>-retry-<n>", the names
// Greyhound uses, so a group migrating from Greyhound drains its old topics.
//
// The names are ambiguous when topic or group names contain "-": topic "a-b"
// with group "c" and topic "a" with group "b-c" share "a-b-c-retry-0" (and
// the dead-letter topic "a-b-c-dlq"). A consumer tells the other group's
// records by their HeaderGroup (Greyhound's by their original topic) and
// refuses to handle them: such a record holds its partition, listed by
// Consumer.Blocked with the reason, until an operator skips it to the
// dead-letter topic. Rename one of the groups.
func TopicName(topic, group string, n int) string {
	return topic + "-" + group + "-retry-" + strconv.Itoa(n)
}

// DLQTopicName is the dead-letter topic of records of topic consumed by
// group: "<topic>-<group>-dlq".
func DLQTopicName(topic, group string) string { return topic + "-" + group + "-dlq" }

// ParseTopicName reverses TopicName for group: it returns the topic and n of
// a name "<topic>-<group>-retry-<n>" (topic not empty, n written as TopicName
// writes it: decimal, no sign, no leading zero), and ok false for any other
// name.
func ParseTopicName(name, group string) (topic string, n int, ok bool) {
	i := strings.LastIndex(name, "-retry-")
	if i < 0 {
		return "", 0, false
	}
	digits := name[i+len("-retry-"):]
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 || strconv.Itoa(n) != digits {
		return "", 0, false
	}
	topic, ok = strings.CutSuffix(name[:i], "-"+group)
	if !ok || topic == "" {
		return "", 0, false
	}
	return topic, n, true
}

// IsDLQTopicName reports whether name is, by its shape, a dead-letter topic of
// group: "<topic>-<group>-dlq" for some non-empty topic.
func IsDLQTopicName(name, group string) bool {
	suffix := "-" + group + "-dlq"
	return len(name) > len(suffix) && strings.HasSuffix(name, suffix)
}
