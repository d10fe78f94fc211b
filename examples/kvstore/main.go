// Command kvstore is the second part of the product story, the in-memory KV
// store: countries and time zones kept in compacted topics, loaded at
// start-up, read with zero latency and updated live; the countries store's
// updates feed the time-zones store.
//
// A reference-data service writes countries (ISO code → name and time
// zones). A scheduling service holds both stores: it subscribes to the
// countries store and maintains, in its own compacted topic, which countries
// use each time zone. The demo then changes countries live, checks that the
// time zones follow, starts a second instance of the service (which loads
// both stores from their topics), and checks that both instances agree. It
// exits with status 1 if any check fails.
//
// It runs on an embedded kfake cluster by default (make demo), or on real
// brokers with -brokers 127.0.0.1:9092 (its topics get a unique suffix and
// are deleted at the end).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/kvstore"
)

// Country is the countries store's value, keyed by ISO 3166 code.
type Country struct {
	Name      string   `json:"name"`
	TimeZones []string `json:"timeZones"`
}

// TimeZone is the time-zones store's value, keyed by IANA name.
type TimeZone struct {
	Countries []string `json:"countries"` // ISO codes, sorted
}

var initialCountries = map[string]Country{
	"FR": {"France", []string{"Europe/Paris"}},
	"DE": {"Germany", []string{"Europe/Berlin"}},
	"ES": {"Spain", []string{"Europe/Madrid", "Atlantic/Canary"}},
	"JP": {"Japan", []string{"Asia/Tokyo"}},
	"BR": {"Brazil", []string{"America/Sao_Paulo", "America/Manaus"}},
	"US": {"United States", []string{"America/New_York", "America/Chicago", "America/Los_Angeles"}},
	"MX": {"Mexico", []string{"America/Mexico_City", "America/Chicago"}},
}

func main() {
	brokersFlag := flag.String("brokers", "", "comma-separated Kafka brokers; empty starts an embedded kfake cluster")
	flag.Parse()
	if err := run(*brokersFlag); err != nil {
		log.Printf("FAILED: %v", err)
		os.Exit(1)
	}
	fmt.Println("OK")
}

func run(brokersFlag string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers, countriesTopic, zonesTopic, cleanup, err := cluster(brokersFlag)
	if err != nil {
		return err
	}
	defer cleanup()
	logger, _ := zap.NewDevelopment(zap.IncreaseLevel(zap.WarnLevel), zap.AddStacktrace(zap.DPanicLevel))
	kafka := whippet.Connection{Brokers: brokers, Logger: logger}
	opts := []kvstore.Option{kvstore.Partitions(3)}

	// The reference-data service: it owns the countries and writes them.
	refdata, err := kvstore.Open(ctx, kafka, countriesTopic, codec.String(), codec.JSON[Country](), opts...)
	if err != nil {
		return err
	}
	defer refdata.Close(context.Background())
	for code, c := range initialCountries {
		if err := refdata.Put(ctx, code, c); err != nil {
			return err
		}
	}
	fmt.Printf("reference data: wrote %d countries to %q\n", len(initialCountries), countriesTopic)

	// The scheduling service, instance 1.
	a, err := startService(ctx, kafka, "instance-1", countriesTopic, zonesTopic, opts)
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.waitZones(ctx, expectedZones(refdata.Snapshot())); err != nil {
		return err
	}
	fr, _ := a.countries.Get("FR")
	zone, _ := a.zones.Get("America/Chicago")
	fmt.Printf("instance-1: %d countries, %d time zones; FR=%s %v; America/Chicago is used by %v\n",
		a.countries.Len(), a.zones.Len(), fr.Name, fr.TimeZones, zone.Countries)
	fmt.Printf("instance-1: Get takes %v (memory only)\n", timeGets(a.countries))
	rr := httptest.NewRecorder()
	a.countries.ReadyHandler().ServeHTTP(rr, httptest.NewRequest("GET", "/ready", nil))
	fmt.Printf("instance-1: readiness probe: %d %s", rr.Code, rr.Body.String())

	// Live updates: New Zealand joins, the US gains a time zone, Germany
	// is removed. The time zones follow through the subscription.
	updates := []struct {
		code string
		c    *Country // nil: delete
	}{
		{"NZ", &Country{"New Zealand", []string{"Pacific/Auckland", "Pacific/Chatham"}}},
		{"US", &Country{"United States", []string{"America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "Pacific/Honolulu"}}},
		{"DE", nil},
	}
	for _, u := range updates {
		if u.c == nil {
			err = refdata.Delete(ctx, u.code)
			fmt.Printf("reference data: deleted %s\n", u.code)
		} else {
			err = refdata.Put(ctx, u.code, *u.c)
			fmt.Printf("reference data: put %s %v\n", u.code, u.c.TimeZones)
		}
		if err != nil {
			return err
		}
	}
	want := expectedZones(refdata.Snapshot())
	if err := a.waitZones(ctx, want); err != nil {
		return err
	}
	if _, ok := a.zones.Get("Europe/Berlin"); ok {
		return errors.New("Europe/Berlin is still there after Germany was deleted")
	}
	nz, _ := a.zones.Get("Pacific/Auckland")
	fmt.Printf("instance-1: updated live: %d countries, %d time zones; Pacific/Auckland is used by %v\n",
		a.countries.Len(), a.zones.Len(), nz.Countries)

	// Instance 2 starts: both stores load from their compacted topics.
	start := time.Now()
	b, err := startService(ctx, kafka, "instance-2", countriesTopic, zonesTopic, opts)
	if err != nil {
		return err
	}
	defer b.close()
	fmt.Printf("instance-2: loaded %d countries and %d time zones in %v\n", b.countries.Len(), b.zones.Len(), time.Since(start).Round(time.Millisecond))
	if err := b.waitZones(ctx, want); err != nil {
		return err
	}
	if !reflect.DeepEqual(a.countries.Snapshot(), b.countries.Snapshot()) {
		return errors.New("the two instances disagree on the countries")
	}
	if !reflect.DeepEqual(a.zones.Snapshot(), b.zones.Snapshot()) {
		return errors.New("the two instances disagree on the time zones")
	}
	fmt.Println("instance-1 and instance-2 hold the same countries and time zones")
	return nil
}

// service is one instance of the scheduling service: the countries store,
// the time-zones store, and the subscription that derives the second from
// the first.
type service struct {
	name      string
	countries *kvstore.Store[string, Country]
	zones     *kvstore.Store[string, TimeZone]
	stop      context.CancelFunc
}

func startService(ctx context.Context, kafka whippet.Connection, name, countriesTopic, zonesTopic string, opts []kvstore.Option) (*service, error) {
	countries, err := kvstore.Open(ctx, kafka, countriesTopic, codec.String(), codec.JSON[Country](), opts...)
	if err != nil {
		return nil, err
	}
	zones, err := kvstore.Open(ctx, kafka, zonesTopic, codec.String(), codec.JSON[TimeZone](), opts...)
	if err != nil {
		countries.Close(context.Background())
		return nil, err
	}
	s := &service{name: name, countries: countries, zones: zones, stop: func() {}}
	for _, st := range []interface{ WaitReady(context.Context) error }{countries, zones} {
		if err := st.WaitReady(ctx); err != nil {
			s.close()
			return nil, err
		}
	}
	// Every change of a country (first, a replay of all countries) updates
	// the time zones it leaves and joins. The callback runs on its own
	// goroutine, so writing to the time-zones store from it is fine.
	subCtx, stop := context.WithCancel(context.Background())
	s.stop = stop
	err = countries.Subscribe(subCtx, func(c kvstore.Change[string, Country]) {
		for _, tz := range c.Old.TimeZones {
			if c.Deleted || !slices.Contains(c.New.TimeZones, tz) {
				s.updateZone(subCtx, tz, func(codes []string) []string {
					return slices.DeleteFunc(codes, func(x string) bool { return x == c.Key })
				})
			}
		}
		for _, tz := range c.New.TimeZones {
			s.updateZone(subCtx, tz, func(codes []string) []string {
				if !slices.Contains(codes, c.Key) {
					codes = append(codes, c.Key)
					slices.Sort(codes)
				}
				return codes
			})
		}
	})
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// updateZone applies fn to the countries of time zone tz, deleting the zone
// when no country uses it any more.
func (s *service) updateZone(ctx context.Context, tz string, fn func([]string) []string) {
	old, _ := s.zones.Get(tz)
	codes := fn(slices.Clone(old.Countries))
	var err error
	switch {
	case slices.Equal(codes, old.Countries) && len(codes) > 0:
		return
	case len(codes) == 0:
		err = s.zones.Delete(ctx, tz)
	default:
		err = s.zones.Put(ctx, tz, TimeZone{Countries: codes})
	}
	if err != nil && ctx.Err() == nil {
		log.Printf("%s: updating time zone %s: %v", s.name, tz, err)
	}
}

// close stops the subscription, then closes the stores (the countries
// store first: it waits for a callback under way, which may be writing time
// zones).
func (s *service) close() {
	s.stop()
	s.countries.Close(context.Background())
	s.zones.Close(context.Background())
}

// waitZones waits until the time-zones store holds want.
func (s *service) waitZones(ctx context.Context, want map[string]TimeZone) error {
	for {
		got := s.zones.Snapshot()
		if reflect.DeepEqual(got, want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: time zones %v, want %v: %w", s.name, got, want, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// expectedZones derives the time zones from the countries.
func expectedZones(countries map[string]Country) map[string]TimeZone {
	out := map[string]TimeZone{}
	for code, c := range countries {
		for _, tz := range c.TimeZones {
			z := out[tz]
			z.Countries = append(z.Countries, code)
			slices.Sort(z.Countries)
			out[tz] = z
		}
	}
	return out
}

// timeGets returns the mean time of a Get.
func timeGets(s *kvstore.Store[string, Country]) time.Duration {
	codes := []string{"FR", "DE", "ES", "JP", "BR", "US", "MX", "XX"}
	const n = 1_000_000
	start := time.Now()
	for i := range n {
		s.Get(codes[i%len(codes)])
	}
	return time.Since(start) / n
}

// cluster returns the brokers and topics to use, starting an embedded kfake
// cluster when no brokers are given.
func cluster(brokers string) ([]string, string, string, func(), error) {
	if brokers != "" {
		var rnd [4]byte
		_, _ = rand.Read(rnd[:])
		suffix := "-" + hex.EncodeToString(rnd[:])
		countries, zones := "countries"+suffix, "time-zones"+suffix
		addrs := strings.Split(brokers, ",")
		return addrs, countries, zones, func() {
			adm, err := kadm.NewOptClient(kgo.SeedBrokers(addrs...))
			if err != nil {
				return
			}
			defer adm.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _ = adm.DeleteTopics(ctx, countries, zones)
		}, nil
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, "", "", nil, err
	}
	fmt.Fprintln(os.Stderr, "embedded kfake cluster at", c.ListenAddrs())
	return c.ListenAddrs(), "countries", "time-zones", c.Close, nil
}
