// Package chaos holds whippet's chaos tests: consumers, producers, retries,
// dead-letter queues, stores and the durable spool run against a 3-node
// Apache Kafka cluster on loopback (replication 3, min.insync.replicas 2)
// while consumer and producer processes are SIGKILLed and brokers are
// killed, restarted and frozen (SIGSTOP/SIGCONT). Every scenario counts records lost and duplicated and
// the time to recover, asserts that nothing is lost and that exactly-once
// outputs have no duplicates, and TestChaos prints one table at the end.
//
// The tests start their own cluster (package localkafka, Java 17+ and Maven
// or cached jars) and are behind the build tag chaos:
//
//	make test-chaos
//	go test -tags chaos -count=1 -v -timeout 20m ./internal/chaos/
//
// The package has no code of its own.
package chaos
