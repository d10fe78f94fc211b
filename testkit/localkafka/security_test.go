package localkafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestUserRedacted(t *testing.T) {
	u := User{Name: "alice", Password: "s3cret-pw"}
	cfg := Config{Security: &Security{Users: []User{u}}}
	for _, s := range []string{fmt.Sprint(u), fmt.Sprintf("%v %+v %#v %s", u, u, u, u), fmt.Sprintf("%+v %#v", cfg.Security, *cfg.Security)} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("printed user leaks the password: %s", s)
		}
		if !strings.Contains(s, "alice") {
			t.Errorf("printed user lacks the name: %s", s)
		}
	}
}

func TestSecurityValidation(t *testing.T) {
	for _, tc := range []struct {
		users []User
		want  string
	}{
		{[]User{{Name: "", Password: "p"}}, "Users[0].Name"},
		{[]User{{Name: "a,b", Password: "p"}}, `Users[0].Name="a,b"`},
		{[]User{{Name: "a", Password: ""}}, "password must be 1 to 256 bytes, got 0"},
		{[]User{{Name: "a", Password: "p"}, {Name: "a", Password: "q"}}, "Users[1].Name=\"a\": duplicate"},
	} {
		_, err := Config{StateDir: t.TempDir(), Security: &Security{Users: tc.users}}.withDefaults()
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("users %v: err %v, want ErrBadConfig with %q", tc.users, err, tc.want)
		}
	}
	// The secure port of the last node must fit too.
	if _, err := (Config{StateDir: t.TempDir(), BasePort: 65534, Security: &Security{}}).withDefaults(); !errors.Is(err, ErrBadConfig) {
		t.Errorf("BasePort 65534 with a secure listener: err %v, want ErrBadConfig", err)
	}
}

func TestSecureServerProperties(t *testing.T) {
	cfg, err := Config{StateDir: "/st", Nodes: 3, Security: &Security{}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	m := props(serverProperties(cfg, 2, "/data", 4))
	want := map[string]string{
		"listeners":                                             "PLAINTEXT://127.0.0.1:19102,CONTROLLER://127.0.0.1:19103,SASL_SSL://127.0.0.1:19104",
		"advertised.listeners":                                  "PLAINTEXT://127.0.0.1:19102,SASL_SSL://127.0.0.1:19104",
		"listener.security.protocol.map":                        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
		"inter.broker.listener.name":                            "PLAINTEXT",
		"controller.listener.names":                             "CONTROLLER",
		"listener.name.sasl_ssl.sasl.enabled.mechanisms":        "SCRAM-SHA-512",
		"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
		"listener.name.sasl_ssl.ssl.keystore.type":              "PEM",
		"listener.name.sasl_ssl.ssl.keystore.location":          filepath.Join("/st", "security", "broker.pem"),
		"listener.name.sasl_ssl.ssl.client.auth":                "none",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	plain, _ := Config{StateDir: "/st"}.withDefaults()
	for k := range props(serverProperties(plain, 1, "/data", 4)) {
		if strings.Contains(k, "sasl") || strings.Contains(k, "ssl.") {
			t.Errorf("a cluster without Security has %s", k)
		}
	}
}

func TestScramCredentialHidesPassword(t *testing.T) {
	arg, err := scramCredential(User{Name: "alice", Password: "alice-secret"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(arg, "alice-secret") || !strings.HasPrefix(arg, `SCRAM-SHA-512=[name=alice,iterations=8192,salt="`) ||
		!strings.Contains(arg, `",saltedpassword="`) {
		t.Errorf("--add-scram value %q: want the salted form without the password", arg)
	}
	again, _ := scramCredential(User{Name: "alice", Password: "alice-secret"})
	if again == arg {
		t.Error("two credentials share a salt")
	}
}

func TestCertificates(t *testing.T) {
	caPEM, brokerPEM, err := newCertificates()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA PEM holds no certificate")
	}
	var certs [][]byte
	var keys int
	rest := brokerPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE":
			certs = append(certs, b.Bytes)
		case "PRIVATE KEY":
			keys++
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				t.Fatalf("broker key is not PKCS#8: %v", err)
			}
			if _, ok := k.(*ecdsa.PrivateKey); !ok {
				t.Errorf("broker key is %T", k)
			}
		default:
			t.Errorf("unexpected PEM block %s", b.Type)
		}
	}
	if len(certs) != 2 || keys != 1 {
		t.Fatalf("broker PEM has %d certificates and %d keys, want 2 (leaf, CA) and 1", len(certs), keys)
	}
	if _, err := tls.X509KeyPair(brokerPEM, brokerPEM); err != nil {
		t.Errorf("broker certificate and key do not match: %v", err)
	}
	leaf, err := x509.ParseCertificate(certs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("broker certificate does not verify for %s against the CA: %v", host, err)
		}
	}
	if bytes := string(caPEM); strings.Contains(bytes, "PRIVATE KEY") {
		t.Error("the CA file holds a private key")
	}
}

// TestIntegrationSecure starts a node with the secure listener and checks
// what a client sees: the right user gets in (TLS verified against the
// cluster's CA) and round-trips a record; a wrong password, a plaintext
// client, TLS without SASL and an untrusted CA are refused; PLAINTEXT still
// works; the password is nowhere but the owner-only users file (not in the
// configs, logs, cluster.json nor the format command line); Up reuses the
// cluster for the same users and refuses other users; Down removes the
// secrets.
func TestIntegrationSecure(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	cfg := integrationConfig(t, 1)
	alice := User{Name: "alice", Password: "alice-" + newClusterID()}
	cfg.Security = &Security{Users: []User{alice, {Name: "bob", Password: "bob-" + newClusterID()}}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Down(context.Background(), cfg.StateDir) })
	t.Logf("Apache Kafka %s ready in %s; secure brokers %v", c.Version, c.ReadyIn, c.SecureBrokers)

	wantSecure := "127.0.0.1:" + strconv.Itoa(cfg.BasePort+2)
	if len(c.SecureBrokers) != 1 || c.SecureBrokers[0] != wantSecure || c.CAFile == "" {
		t.Fatalf("SecureBrokers %v, CAFile %q; want [%s] and a CA file", c.SecureBrokers, c.CAFile, wantSecure)
	}
	loaded, err := Load(cfg.StateDir)
	if err != nil || fmt.Sprint(loaded.SecureBrokers) != fmt.Sprint(c.SecureBrokers) || loaded.CAFile != c.CAFile {
		t.Errorf("Load: %v, %v, %q; want the secure fields back", err, loaded.SecureBrokers, loaded.CAFile)
	}
	users, err := loaded.SASLUsers()
	if err != nil || len(users) != 2 || users[0] != alice {
		t.Errorf("SASLUsers = %v, %v", users, err)
	}

	// The right user round-trips a record through the secure listener.
	opts, err := c.SecureClientOpts("alice")
	if err != nil {
		t.Fatal(err)
	}
	roundTripWith(t, opts, "secure-roundtrip")
	if _, err := c.SecureClientOpts("carol"); !errors.Is(err, ErrBadConfig) {
		t.Errorf("SecureClientOpts(carol): %v, want ErrBadConfig", err)
	}
	// PLAINTEXT is unchanged.
	roundTrip(t, c, 1)

	tc, err := c.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, tcase := range []struct {
		name  string
		opts  []kgo.Opt
		check func(error) bool
	}{
		{"wrong password", mustOpts(t, c, User{Name: "alice", Password: "not-" + alice.Password}),
			func(err error) bool { return errors.Is(err, kerr.SaslAuthenticationFailed) }},
		{"unknown user", mustOpts(t, c, User{Name: "mallory", Password: alice.Password}),
			func(err error) bool { return errors.Is(err, kerr.SaslAuthenticationFailed) }},
		{"plaintext", []kgo.Opt{kgo.SeedBrokers(c.SecureBrokers...)},
			func(err error) bool { return strings.Contains(err.Error(), "tls") }},
		{"TLS without SASL", []kgo.Opt{kgo.SeedBrokers(c.SecureBrokers...), kgo.DialTLSConfig(tc)},
			func(err error) bool { var e *kgo.ErrFirstReadEOF; return errors.As(err, &e) }},
		{"untrusted CA", []kgo.Opt{kgo.SeedBrokers(c.SecureBrokers...), kgo.DialTLSConfig(&tls.Config{})},
			func(err error) bool { var e x509.UnknownAuthorityError; return errors.As(err, &e) }},
	} {
		cl, err := kgo.NewClient(append(tcase.opts, kgo.RequestRetries(0))...)
		if err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
		err = cl.Ping(pctx)
		pcancel()
		cl.Close()
		if err == nil || !tcase.check(err) {
			t.Errorf("%s: Ping = %v", tcase.name, err)
		} else {
			t.Logf("%s: %v", tcase.name, err)
		}
	}

	// Secrets: only in the owner-only users and password files and the broker key file.
	pwFile, err := c.PasswordFile("alice")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(pwFile); err != nil || string(b) != alice.Password+"\n" {
		t.Errorf("PasswordFile(alice) %s: %v, or it does not hold the password and a newline", pwFile, err)
	}
	if _, err := c.PasswordFile("carol"); !errors.Is(err, ErrBadConfig) {
		t.Errorf("PasswordFile(carol): %v, want ErrBadConfig", err)
	}
	for _, f := range []string{filepath.Join(cfg.StateDir, "security", "users.json"), filepath.Join(cfg.StateDir, "security", "broker.pem"), pwFile} {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, st.Mode().Perm())
		}
	}
	err = filepath.Walk(cfg.StateDir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || filepath.Base(path) == "users.json" || strings.HasSuffix(path, ".password") || strings.Contains(path, string(filepath.Separator)+"data"+string(filepath.Separator)) {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, u := range users {
			if strings.Contains(string(b), u.Password) {
				t.Errorf("%s holds %s's password", path, u.Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.st.Node[0].Dir, "format.args")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the format @argfile was left behind: %v", err)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c.PIDs()[0])); err == nil {
		if strings.Contains(string(b), alice.Password) || strings.Contains(string(b), "saltedpassword") {
			t.Error("the broker's command line holds a credential")
		}
	}

	// Up with the same users reuses the cluster; other users are refused.
	again, err := Up(ctx, cfg)
	if err != nil || !again.Reused {
		t.Errorf("Up with the same users: reused=%v, err %v", again != nil && again.Reused, err)
	}
	other := cfg
	other.Security = &Security{Users: []User{{Name: "alice", Password: "changed"}}}
	if _, err := Up(ctx, other); !errors.Is(err, ErrBusy) {
		t.Errorf("Up with other users: %v, want ErrBusy", err)
	}
	plain := cfg
	plain.Security = nil
	if _, err := Up(ctx, plain); !errors.Is(err, ErrBusy) {
		t.Errorf("Up without Security on a secure cluster: %v, want ErrBusy", err)
	}

	if err := Down(ctx, cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "security")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Down left the security dir (broker key, passwords): %v", err)
	}
}

func mustOpts(t *testing.T, c *Cluster, u User) []kgo.Opt {
	t.Helper()
	opts, err := c.SecureClientOptsAs(u)
	if err != nil {
		t.Fatal(err)
	}
	return opts
}

// roundTripWith produces a record with opts and consumes it back.
func roundTripWith(t *testing.T, opts []kgo.Opt, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(append(opts, kgo.AllowAutoTopicCreation(), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("over TLS")}).FirstErr(); err != nil {
		t.Fatalf("produce over SASL_SSL: %v", err)
	}
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consume over SASL_SSL: %v", err)
		}
		if recs := fs.Records(); len(recs) > 0 {
			if string(recs[0].Value) != "over TLS" {
				t.Errorf("consumed %q", recs[0].Value)
			}
			return
		}
	}
}

// A cluster with a SASL_SSL listener, and a franz-go client that logs in to
// it. (Not run: it needs Java and the Kafka jars.)
func ExampleUp_security() {
	ctx := context.Background()
	c, err := Up(ctx, Config{
		StateDir: "/tmp/kafka-secure",
		BasePort: 23092, // PLAINTEXT 23092, CONTROLLER 23093, SASL_SSL 23094
		Security: &Security{Users: []User{{Name: "alice", Password: "alice-secret"}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer Down(ctx, c.StateDir)
	opts, err := c.SecureClientOpts("alice") // seed brokers, TLS trusting c.CAFile, SCRAM-SHA-512
	if err != nil {
		fmt.Println(err)
		return
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	fmt.Println(cl.Ping(ctx))
}
