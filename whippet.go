// Package whippet holds what every whippet component shares: the
// [Connection] to Kafka. A service configures it once and hands it to each
// constructor (consumer.New, producer.New and NewTransactional, spool.New,
// dlq.New, kvstore.Open, atomicstore.Open and NewProcessor, aggregator.Open
// and NewProcessor, notify.NewPublisher and NewGateway; admin.New takes the
// consumers and dead-letter clients built with it):
//
//	kafka := whippet.Connection{
//		Brokers:    []string{"127.0.0.1:9092"},
//		Logger:     logger,
//		Registerer: prometheus.DefaultRegisterer,
//	}
//	p, err := producer.New(kafka)
//	c, err := consumer.New(kafka, handler, consumer.Group("renewals"), consumer.Topics("renewals"))
//
// The components live in their own packages; see README.md for the tour.
package whippet

import (
	"crypto/tls"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"go.uber.org/zap"
)

// Connection says how to reach a Kafka cluster and where a component reports.
// The zero value of every field but Brokers is a working default. A
// Connection is a plain value: copy it, change a field (ClientID, say) and
// hand the copy to another component.
//
// Each component validates it before any network I/O; an error names the
// field, e.g. "consumer: Connection.Brokers: at least one seed broker is
// required".
type Connection struct {
	// Brokers are the seed brokers, "host:port". Required.
	Brokers []string

	// TLS, when set, encrypts every connection with this configuration
	// (kgo.DialTLSConfig). Default: plaintext.
	TLS *tls.Config

	// SASL, when set, authenticates every connection with this mechanism,
	// e.g. scram.Auth{User: u, Pass: p}.AsSha512Mechanism() from
	// github.com/twmb/franz-go/pkg/sasl/scram. Default: none.
	SASL sasl.Mechanism

	// ClientID is the client.id the brokers see (in their logs and quotas).
	// Default: "whippet-<component>", e.g. "whippet-consumer".
	ClientID string

	// ClientOptions are extra franz-go options, applied after whippet's own,
	// so they win where both set the same thing. Default: none.
	ClientOptions []kgo.Opt

	// Logger receives the component's logs and franz-go's (through kzap).
	// Default: no logging.
	Logger *zap.Logger

	// Registerer, when set, receives the component's metrics
	// (whippet_<component>_*) and its franz-go client's metrics
	// (whippet_kafka_*, labelled component and name: a consumer's group, a
	// store's name, a producer's client id). Two components of one kind with
	// one name on one Registerer are refused with an error. Default: no
	// metrics.
	Registerer prometheus.Registerer
}
