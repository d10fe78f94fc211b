package retry_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/whippet-go/whippet/retry"
)

// A policy for an order notifier: two quick retries in place, then retry
// topics due 1 minute and 10 minutes later, then the dead-letter topic;
// errors that retrying cannot fix skip all of it.
func Example() {
	errUnknownCustomer := errors.New("unknown customer")
	policy := retry.BlockingThenNonBlocking(
		retry.Blocking(100*time.Millisecond, 500*time.Millisecond),
		retry.NonBlocking(time.Minute, 10*time.Minute),
	).NonRetriableErrors(errUnknownCustomer)

	fmt.Println(policy)
	fmt.Println(retry.TopicName("orders", "notifier", 0), retry.DLQTopicName("orders", "notifier"))
	fmt.Println(policy.Classify(fmt.Errorf("order 7: %w", errUnknownCustomer)))
	fmt.Println(policy.Classify(errors.New("SMTP timeout")) == "")
	// Output:
	// blocking [100ms 500ms], then non-blocking [1m0s 10m0s], then dead-letter
	// orders-notifier-retry-0 orders-notifier-dlq
	// non-retriable
	// true
}
