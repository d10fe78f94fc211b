package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/consumer/admin"
	"github.com/whippet-go/whippet/retry"
)

// An operator sees the record that blocks a partition and skips it to the
// dead-letter topic, through the admin API a service mounts on its mux.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "renewals"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	for _, user := range []string{"user-1", "user-7", "user-2"} {
		cl.ProduceSync(context.Background(), &kgo.Record{Topic: "renewals", Key: []byte(user), Value: []byte("renew " + user)})
	}

	// The service: a consumer whose handler keeps failing on user-7, retried
	// in place (blocking retries), so that its partition waits.
	c, err := consumer.New(whippet.Connection{Brokers: brokers}, consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
		if string(rec.Key) == "user-7" {
			return errors.New("card declined")
		}
		return nil
	}), consumer.Group("renewal-service"), consumer.Topics("renewals"),
		consumer.Retry(retry.Blocking(time.Hour)))
	if err != nil {
		panic(err)
	}
	go func() { _ = c.Run(context.Background()) }()
	defer c.Close(context.Background())

	// Its admin handler: operators name themselves in a header here; a real
	// service asks its own authentication.
	h, err := admin.New(
		admin.Consumer("renewals", c),
		admin.Authorize(func(r *http.Request, a admin.Action) (string, error) {
			if who := r.Header.Get("X-User"); who != "" || a.Name == admin.ActionView {
				return who, nil
			}
			return "", errors.New("who are you?")
		}),
	)
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/whippet/", http.StripPrefix("/whippet", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// What blocks? Its key and error are payload: a named user may read
	// them here (admin.ActionViewPayloads); an anonymous one sees them
	// hidden.
	var blocked []admin.BlockedView
	for len(blocked) == 0 {
		time.Sleep(20 * time.Millisecond)
		req, _ := http.NewRequest("GET", srv.URL+"/whippet/api/consumers/renewals/blocked", nil)
		req.Header.Set("X-User", "alice")
		res, err := srv.Client().Do(req)
		if err != nil {
			panic(err)
		}
		_ = json.NewDecoder(res.Body).Decode(&blocked)
		res.Body.Close()
	}
	b := blocked[0]
	fmt.Printf("blocked: %s/%d at offset %d, key %s: %s\n", b.Topic, b.Partition, b.Offset, *b.Key, b.Error)

	// Skip it.
	req, _ := http.NewRequest("POST", srv.URL+"/whippet/api/consumers/renewals/partitions/renewals/0/skip", nil)
	req.Header.Set("X-User", "alice")
	res, err := srv.Client().Do(req)
	if err != nil {
		panic(err)
	}
	var done admin.ActionRecord
	_ = json.NewDecoder(res.Body).Decode(&done)
	res.Body.Close()
	fmt.Println(res.StatusCode, done.Who, done.Action)
	fmt.Println(done.Detail)
	// Output:
	// blocked: renewals/0 at offset 1, key user-7: card declined
	// 200 alice skip
	// skipped renewals/0 at offset(s) [1]: sent to the dead-letter topic (reason skipped)
}
