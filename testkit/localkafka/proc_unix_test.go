//go:build unix

package localkafka

import "testing"

// A node is taken for gone only if its pid runs another command line: an
// empty one (a process between images, or a read the kernel could not do
// at that moment) is not proof, and start-up must not fail on it.
func TestCmdlineMayBe(t *testing.T) {
	const marker = "/state/node1/server.properties"
	for _, c := range []struct {
		cmdline string
		want    bool
	}{
		{"/usr/bin/java\x00-cp\x00libs/*\x00kafka.Kafka\x00/state/node1/server.properties\x00", true},
		{"", true},
		{"/usr/bin/java\x00kafka.Kafka\x00/state/node2/server.properties\x00", false},
		{"/bin/sleep\x0010\x00", false},
	} {
		if got := cmdlineMayBe([]byte(c.cmdline), marker); got != c.want {
			t.Errorf("cmdlineMayBe(%q) = %v, want %v", c.cmdline, got, c.want)
		}
	}
}
