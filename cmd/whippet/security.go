package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/secure"
)

// securityUsage documents the connection security flags of the commands
// that talk to Kafka.
const securityUsage = `
Connection security (flags win over the environment):
  -tls                      connect with TLS (implied by the other -tls-* flags) [WHIPPET_TLS=true]
  -tls-ca FILE              trust the CA certificates in this PEM file instead of the system's [WHIPPET_TLS_CA]
  -tls-cert FILE -tls-key FILE
                            present this client certificate (PEM) [WHIPPET_TLS_CERT, WHIPPET_TLS_KEY]
  -tls-server-name NAME     expect this name in the broker certificate [WHIPPET_TLS_SERVER_NAME]
  -sasl-mechanism M         PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 [WHIPPET_SASL_MECHANISM]
  -sasl-user NAME           the SASL user [WHIPPET_SASL_USER]
  -sasl-password-file FILE  read the password from this file (one trailing newline is dropped)
                            [WHIPPET_SASL_PASSWORD_FILE]; else it comes from $WHIPPET_SASL_PASSWORD.
                            There is no password flag: a command line shows in ps and shell history.
`

var saslMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

// securityFlags are the TLS and SASL settings of a Kafka connection.
type securityFlags struct {
	tls                                        bool
	caFile, certFile, keyFile, serverName      string
	mechanism, user, passwordFile, passwordEnv string
}

// register adds the flags to fs, with defaults from the environment.
func (s *securityFlags) register(fs *flag.FlagSet) {
	s.tls = os.Getenv("WHIPPET_TLS") == "true" || os.Getenv("WHIPPET_TLS") == "1"
	fs.BoolVar(&s.tls, "tls", s.tls, "connect with TLS [WHIPPET_TLS]")
	fs.StringVar(&s.caFile, "tls-ca", os.Getenv("WHIPPET_TLS_CA"), "PEM file of the CA certificates to trust [WHIPPET_TLS_CA]")
	fs.StringVar(&s.certFile, "tls-cert", os.Getenv("WHIPPET_TLS_CERT"), "PEM file of the client certificate [WHIPPET_TLS_CERT]")
	fs.StringVar(&s.keyFile, "tls-key", os.Getenv("WHIPPET_TLS_KEY"), "PEM file of the client certificate's key [WHIPPET_TLS_KEY]")
	fs.StringVar(&s.serverName, "tls-server-name", os.Getenv("WHIPPET_TLS_SERVER_NAME"), "name expected in the broker certificate [WHIPPET_TLS_SERVER_NAME]")
	fs.StringVar(&s.mechanism, "sasl-mechanism", os.Getenv("WHIPPET_SASL_MECHANISM"), "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 [WHIPPET_SASL_MECHANISM]")
	fs.StringVar(&s.user, "sasl-user", os.Getenv("WHIPPET_SASL_USER"), "SASL user [WHIPPET_SASL_USER]")
	fs.StringVar(&s.passwordFile, "sasl-password-file", os.Getenv("WHIPPET_SASL_PASSWORD_FILE"),
		"file holding the SASL password [WHIPPET_SASL_PASSWORD_FILE]; else $WHIPPET_SASL_PASSWORD")
	s.passwordEnv = "WHIPPET_SASL_PASSWORD"
}

// rejectPasswordFlag refuses a password given on the command line, without
// repeating it.
func rejectPasswordFlag(args []string) error {
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && (name == "sasl-password" || name == "password") {
			return fmt.Errorf("%w: -%s is not accepted: a password on the command line shows in ps and the shell history; "+
				"set WHIPPET_SASL_PASSWORD or use -sasl-password-file", errUsage, name)
		}
	}
	return nil
}

// kafkaFlags say how a command reaches Kafka: -brokers and the TLS and SASL
// flags. connection turns them into the one whippet.Connection every Kafka
// client of the command is built from.
type kafkaFlags struct {
	brokers  string
	security securityFlags
}

// register adds -brokers and the security flags to fs, with defaults from
// the environment.
func (k *kafkaFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.brokers, "brokers", os.Getenv("KAFKA_BROKERS"), "seed brokers, comma-separated [KAFKA_BROKERS]")
	k.security.register(fs)
}

// connection returns the whippet.Connection of the flags: the seed brokers,
// and TLS and SASL when the flags ask for them. No brokers or a bad
// combination of flags is a usage error; an unreadable or invalid file is an
// error naming the file. No error holds the password.
func (k *kafkaFlags) connection() (whippet.Connection, error) {
	var conn whippet.Connection
	for b := range strings.SplitSeq(k.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			conn.Brokers = append(conn.Brokers, b)
		}
	}
	if len(conn.Brokers) == 0 {
		return conn, fmt.Errorf("%w: no brokers: set -brokers or KAFKA_BROKERS", errUsage)
	}
	s := &k.security
	if (s.certFile == "") != (s.keyFile == "") {
		return conn, fmt.Errorf("%w: -tls-cert and -tls-key go together", errUsage)
	}
	if s.tls || s.caFile != "" || s.certFile != "" || s.serverName != "" {
		tc, err := tlsConfig(s.caFile, s.certFile, s.keyFile, s.serverName)
		if err != nil {
			return conn, err
		}
		conn.TLS = tc
	}
	m, err := s.saslMechanism()
	if err != nil {
		return conn, err
	}
	conn.SASL = m
	return conn, nil
}

// tlsConfig returns a client TLS configuration trusting the CA certificates
// in caFile (the system's if empty) and presenting the certificate in
// certFile and keyFile (none if empty).
func tlsConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("%w: -tls-cert and -tls-key go together", errUsage)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("-tls-ca: %s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("-tls-cert %s / -tls-key %s: %w", certFile, keyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (s *securityFlags) saslMechanism() (sasl.Mechanism, error) {
	if s.mechanism == "" {
		if s.user != "" || s.passwordFile != "" {
			return nil, fmt.Errorf("%w: -sasl-user and -sasl-password-file need -sasl-mechanism (%s)", errUsage, strings.Join(saslMechanisms, ", "))
		}
		return nil, nil
	}
	mech := strings.ToUpper(s.mechanism)
	if !slices.Contains(saslMechanisms, mech) {
		return nil, fmt.Errorf("%w: -sasl-mechanism %q: want one of %s", errUsage, s.mechanism, strings.Join(saslMechanisms, ", "))
	}
	if s.user == "" {
		return nil, fmt.Errorf("%w: -sasl-mechanism %s needs -sasl-user", errUsage, mech)
	}
	var password string
	switch {
	case s.passwordFile != "":
		b, err := os.ReadFile(s.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("-sasl-password-file: %w", err)
		}
		password = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if password == "" {
			return nil, fmt.Errorf("-sasl-password-file: %s is empty", s.passwordFile)
		}
	case os.Getenv(s.passwordEnv) != "":
		password = os.Getenv(s.passwordEnv)
	default:
		return nil, fmt.Errorf("%w: -sasl-mechanism %s needs a password: set %s or use -sasl-password-file", errUsage, mech, s.passwordEnv)
	}
	switch mech {
	case "PLAIN":
		return plain.Auth{User: s.user, Pass: password}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: s.user, Pass: password}.AsSha256Mechanism(), nil
	default:
		return scram.Auth{User: s.user, Pass: password}.AsSha512Mechanism(), nil
	}
}

// explain adds what the flags say (user, mechanism, TLS or not; never the
// password) to an error caused by authentication or TLS set-up.
func (s *securityFlags) explain(err error) error {
	if !secure.MaybeAuthError(err) {
		return err
	}
	var how []string
	if s.mechanism != "" {
		how = append(how, fmt.Sprintf("SASL %s as user %q", strings.ToUpper(s.mechanism), s.user))
	} else {
		how = append(how, "no SASL")
	}
	switch {
	case s.caFile != "":
		how = append(how, "TLS trusting "+s.caFile)
	case s.tls || s.certFile != "" || s.serverName != "":
		how = append(how, "TLS trusting the system CAs")
	default:
		how = append(how, "no TLS")
	}
	return &authFailed{how: strings.Join(how, ", "), err: err}
}

// authFailed is a connection refused for its security settings.
type authFailed struct {
	how string
	err error
}

func (e *authFailed) Error() string {
	return fmt.Sprintf("Kafka refused the connection (%s): %v", e.how, e.err)
}
func (e *authFailed) Unwrap() error { return e.err }
