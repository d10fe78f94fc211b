package localkafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SecureListenerName is the name (and security protocol) of the secure listener.
const SecureListenerName = "SASL_SSL"

// SASLMechanism is the SASL mechanism of the secure listener.
const SASLMechanism = "SCRAM-SHA-512"

// DefaultSASLUser is the user Up creates when Security.Users is empty; its
// password is random (see Cluster.SASLUsers).
const DefaultSASLUser = "whippet"

// scramIterations is the SCRAM-SHA-512 iteration count of the users
// (Kafka's minimum is 4096).
const scramIterations = 8192

const (
	securityDirName = "security"
	caFileName      = "ca.pem"
	brokerPEMName   = "broker.pem" // certificate chain and private key
	usersFileName   = "users.json"
)

// Security turns on the secure listener (Config.Security). Every node then
// also listens on 127.0.0.1 at its PLAINTEXT port + 2 with SASL_SSL: TLS
// with a broker certificate (for 127.0.0.1 and localhost) signed by a
// throwaway CA, and SCRAM-SHA-512 logins. The PLAINTEXT and CONTROLLER
// listeners stay as they are (inter-broker and controller traffic, and the
// readiness probe, use them), so a test can compare a secured client with a
// plain one on the same cluster. Up also checks that the first user can
// log in on every node. Cluster.SecureBrokers, CAFile, SASLUsers,
// TLSConfig and SecureClientOpts give a client what it needs.
//
// Secrets stay out of command lines and logs: the storage is formatted
// with salted SCRAM credentials computed here, passed through an owner-only
// java @argfile (never the password, never on a command line); the CA's
// private key is never written; the broker key and the users' passwords
// are written only to owner-only files (mode 0600) in <StateDir>/security,
// which Down removes. Kafka 3.9 and 4.x both support this set-up.
type Security struct {
	// Users are the SCRAM-SHA-512 users created when the storage is
	// formatted. Default: one user, DefaultSASLUser, with a random password.
	Users []User
}

// User is a SCRAM-SHA-512 user of the secure listener. Its String and
// GoString methods leave the password out, so printing a User (or a
// Security, or a Config) with fmt does not leak it.
type User struct {
	// Name is the user name: 1 to 64 characters out of A-Z a-z 0-9 . _ -.
	Name string
	// Password is the password: 1 to 256 bytes.
	Password string
}

// String returns the user name and a redacted password.
func (u User) String() string { return u.Name + ":[redacted]" }

// GoString is String, for %#v.
func (u User) GoString() string { return "localkafka.User{" + u.String() + "}" }

var userNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// validate checks the users (part of Config.withDefaults).
func (s *Security) validate() error {
	if s == nil {
		return nil
	}
	seen := map[string]bool{}
	for i, u := range s.Users {
		if !userNameRE.MatchString(u.Name) {
			return fmt.Errorf("%w: Security.Users[%d].Name=%q: want 1 to 64 characters out of A-Z a-z 0-9 . _ -", ErrBadConfig, i, u.Name)
		}
		if seen[u.Name] {
			return fmt.Errorf("%w: Security.Users[%d].Name=%q: duplicate user", ErrBadConfig, i, u.Name)
		}
		seen[u.Name] = true
		if n := len(u.Password); n == 0 || n > 256 {
			return fmt.Errorf("%w: Security.Users[%d] (%s): password must be 1 to 256 bytes, got %d", ErrBadConfig, i, u.Name, n)
		}
	}
	return nil
}

// secState is the "security" part of cluster.json: no secrets.
type secState struct {
	Brokers   []string `json:"brokers"`
	CAFile    string   `json:"ca_file"`
	UsersFile string   `json:"users_file"`
	UserNames []string `json:"user_names"`
}

// securePort returns the SASL_SSL port of node: its broker port + 2.
func (c Config) securePort(node int) int { return c.brokerPort(node) + 2 }

func securityDir(stateDir string) string { return filepath.Join(stateDir, securityDirName) }

// withSecurity adds the secure listener to the properties p of node.
func withSecurity(cfg Config, node int, p []kv) []kv {
	if cfg.Security == nil {
		return p
	}
	addr := fmt.Sprintf("%s://127.0.0.1:%d", SecureListenerName, cfg.securePort(node))
	for i := range p {
		switch p[i].k {
		case "listeners", "advertised.listeners":
			p[i].v += "," + addr
		case "listener.security.protocol.map":
			p[i].v += "," + SecureListenerName + ":SASL_SSL"
		}
	}
	prefix := "listener.name." + strings.ToLower(SecureListenerName) + "."
	dir := securityDir(cfg.StateDir)
	return append(p,
		kv{prefix + "sasl.enabled.mechanisms", SASLMechanism},
		// The server side of SCRAM needs a login module but no options: the
		// credentials live in the metadata log (formatted with --add-scram).
		kv{prefix + strings.ToLower(SASLMechanism) + ".sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required;"},
		kv{prefix + "ssl.keystore.type", "PEM"},
		kv{prefix + "ssl.keystore.location", filepath.Join(dir, brokerPEMName)},
		kv{prefix + "ssl.client.auth", "none"},
	)
}

// setupSecurity writes the CA, the broker certificate and key and the users
// file into the state dir, and returns the state to record and the
// StorageTool arguments that create the users.
func setupSecurity(cfg Config) (*secState, []string, error) {
	if cfg.Security == nil {
		return nil, nil, nil
	}
	users := cfg.Security.Users
	if len(users) == 0 {
		var b [18]byte
		_, _ = rand.Read(b[:])
		users = []User{{Name: DefaultSASLUser, Password: base64.RawURLEncoding.EncodeToString(b[:])}}
	}
	dir := securityDir(cfg.StateDir)
	if err := os.RemoveAll(dir); err != nil {
		return nil, nil, fmt.Errorf("localkafka: clear %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("localkafka: %w", err)
	}
	caPEM, brokerPEM, err := newCertificates()
	if err != nil {
		return nil, nil, err
	}
	st := &secState{
		CAFile:    filepath.Join(dir, caFileName),
		UsersFile: filepath.Join(dir, usersFileName),
	}
	usersJSON, err := json.Marshal(users)
	if err != nil {
		return nil, nil, fmt.Errorf("localkafka: encode users: %w", err)
	}
	type file struct {
		path string
		data []byte
		mode os.FileMode
	}
	files := []file{
		{st.CAFile, caPEM, 0o644},
		{filepath.Join(dir, brokerPEMName), brokerPEM, 0o600},
		{st.UsersFile, usersJSON, 0o600},
	}
	for _, u := range users { // for tools that read a password from a file (whippet -sasl-password-file)
		files = append(files, file{passwordFile(dir, u.Name), []byte(u.Password + "\n"), 0o600})
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			return nil, nil, fmt.Errorf("localkafka: write %s: %w", f.path, err)
		}
	}
	for i := 1; i <= cfg.Nodes; i++ {
		st.Brokers = append(st.Brokers, net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.securePort(i))))
	}
	var args []string
	for _, u := range users {
		st.UserNames = append(st.UserNames, u.Name)
		arg, err := scramCredential(u)
		if err != nil {
			return nil, nil, err
		}
		args = append(args, "--add-scram", arg)
	}
	return st, args, nil
}

// scramCredential returns u as a StorageTool --add-scram value in its salted
// form, so that the password never appears on a command line.
func scramCredential(u User) (string, error) {
	salt := make([]byte, 32)
	_, _ = rand.Read(salt)
	salted, err := pbkdf2.Key(sha512.New, u.Password, salt, scramIterations, sha512.Size)
	if err != nil {
		return "", fmt.Errorf("localkafka: SCRAM credential of %s: %w", u.Name, err)
	}
	return fmt.Sprintf(`%s=[name=%s,iterations=%d,salt="%s",saltedpassword="%s"]`, SASLMechanism, u.Name, scramIterations,
		base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(salted)), nil
}

// newCertificates makes a throwaway ECDSA P-256 CA and a broker certificate
// for 127.0.0.1 and localhost signed by it. It returns the CA certificate
// (PEM) and the broker's certificate chain followed by its PKCS#8 key (PEM):
// the CA's key is dropped.
func newCertificates() (caPEM, brokerPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("localkafka: CA key: %w", err)
	}
	now := time.Now()
	serial := func() *big.Int {
		n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
		return n
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "whippet localkafka throwaway CA", Organization: []string{"whippet"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("localkafka: CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, fmt.Errorf("localkafka: CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("localkafka: broker key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "127.0.0.1", Organization: []string{"whippet"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("localkafka: broker certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("localkafka: broker key: %w", err)
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	brokerPEM = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), caPEM...)
	brokerPEM = append(brokerPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})...)
	return caPEM, brokerPEM, nil
}

// sameSecurity reports whether the running cluster's security matches cfg:
// both off, or both on with, if cfg names users, the same users.
func (c *Cluster) sameSecurity(cfg Config) bool {
	if (c.st.Security == nil) != (cfg.Security == nil) {
		return false
	}
	if cfg.Security == nil || len(cfg.Security.Users) == 0 {
		return true
	}
	have, err := c.SASLUsers()
	if err != nil || len(have) != len(cfg.Security.Users) {
		return false
	}
	for i, u := range cfg.Security.Users {
		if have[i] != u {
			return false
		}
	}
	return true
}

// securityNote describes the secure listener for ErrBusy messages.
func (c *Cluster) securityNote() string {
	if c.st.Security == nil {
		return " without a secure listener"
	}
	return fmt.Sprintf(" with a secure listener (users %s)", strings.Join(c.st.Security.UserNames, ", "))
}

// securityNote describes the secure listener cfg asks for.
func (c Config) securityNote() string {
	switch {
	case c.Security == nil:
		return " without a secure listener"
	case len(c.Security.Users) == 0:
		return " with a secure listener"
	}
	names := make([]string, len(c.Security.Users))
	for i, u := range c.Security.Users {
		names[i] = u.Name
	}
	return fmt.Sprintf(" with a secure listener (users %s)", strings.Join(names, ", "))
}

// syncSecurity fills in the exported security fields from the state.
func (c *Cluster) syncSecurity() {
	c.SecureBrokers, c.CAFile = nil, ""
	if s := c.st.Security; s != nil {
		c.SecureBrokers, c.CAFile = s.Brokers, s.CAFile
	}
}

func passwordFile(dir, user string) string { return filepath.Join(dir, user+".password") }

// PasswordFile returns the owner-only file that holds user's password
// followed by a newline, for tools that read a password from a file.
func (c *Cluster) PasswordFile(user string) (string, error) {
	if c.st.Security == nil {
		return "", ErrNoSecurity
	}
	if !slices.Contains(c.st.Security.UserNames, user) {
		return "", fmt.Errorf("%w: no SASL user %q (users: %s)", ErrBadConfig, user, strings.Join(c.st.Security.UserNames, ", "))
	}
	path := passwordFile(filepath.Dir(c.st.Security.UsersFile), user)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("localkafka: password file of %s: %w", user, err)
	}
	return path, nil
}

// ErrNoSecurity is returned by the security methods of a Cluster started
// without Config.Security.
var ErrNoSecurity = errors.New("localkafka: cluster has no secure listener (Config.Security)")

// SASLUsers returns the SCRAM-SHA-512 users (names and passwords) of the
// secure listener, read from the state dir's owner-only users file.
func (c *Cluster) SASLUsers() ([]User, error) {
	if c.st.Security == nil {
		return nil, ErrNoSecurity
	}
	b, err := os.ReadFile(c.st.Security.UsersFile)
	if err != nil {
		return nil, fmt.Errorf("localkafka: read SASL users: %w", err)
	}
	var users []User
	if err := json.Unmarshal(b, &users); err != nil {
		return nil, fmt.Errorf("localkafka: corrupt %s: %w", c.st.Security.UsersFile, err)
	}
	return users, nil
}

// CACertPool returns a pool holding the CA that signed the secure
// listener's certificate.
func (c *Cluster) CACertPool() (*x509.CertPool, error) {
	if c.st.Security == nil {
		return nil, ErrNoSecurity
	}
	b, err := os.ReadFile(c.st.Security.CAFile)
	if err != nil {
		return nil, fmt.Errorf("localkafka: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("localkafka: %s holds no PEM certificate", c.st.Security.CAFile)
	}
	return pool, nil
}

// TLSConfig returns a client TLS configuration that trusts only the
// cluster's CA (and verifies the broker certificate's 127.0.0.1 address).
func (c *Cluster) TLSConfig() (*tls.Config, error) {
	pool, err := c.CACertPool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// SecureClientOpts returns the franz-go options that reach the secure
// listener as user: the secure seed brokers, TLS trusting the cluster's CA,
// and SCRAM-SHA-512 with the user's password. The user must be one of
// SASLUsers.
func (c *Cluster) SecureClientOpts(user string) ([]kgo.Opt, error) {
	users, err := c.SASLUsers()
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		if u.Name == user {
			return c.SecureClientOptsAs(u)
		}
	}
	return nil, fmt.Errorf("%w: no SASL user %q (users: %s)", ErrBadConfig, user, strings.Join(c.st.Security.UserNames, ", "))
}

// SecureClientOptsAs is SecureClientOpts with any name and password, such
// as a wrong one.
func (c *Cluster) SecureClientOptsAs(u User) ([]kgo.Opt, error) {
	tc, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	return []kgo.Opt{
		kgo.SeedBrokers(c.st.Security.Brokers...),
		kgo.DialTLSConfig(tc),
		kgo.SASL(scram.Auth{User: u.Name, Pass: u.Password}.AsSha512Mechanism()),
	}, nil
}

// probeSecure checks that the secure listener of every node takes a
// SCRAM-SHA-512 login of the first user, retrying until ctx ends.
func (c *Cluster) probeSecure(ctx context.Context) error {
	if c.st.Security == nil {
		return nil
	}
	users, err := c.SASLUsers()
	if err != nil {
		return err
	}
	if len(users) == 0 {
		return fmt.Errorf("localkafka: %s lists no users", c.st.Security.UsersFile)
	}
	opts, err := c.SecureClientOptsAs(users[0])
	if err != nil {
		return err
	}
	var last error
	for _, addr := range c.st.Security.Brokers {
		for {
			last = pingSecure(ctx, addr, opts)
			if last == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("secure listener %s: %w", addr, last)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// pingSecure logs in to the one broker at addr and asks for metadata.
func pingSecure(ctx context.Context, addr string, opts []kgo.Opt) error {
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), opts...),
		kgo.SeedBrokers(addr), kgo.DialTimeout(2*time.Second), kgo.RequestRetries(0))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return cl.Ping(pctx)
}

// writeArgFile writes args (a main class and its arguments) as a java
// launcher @argfile readable only by the owner, each argument in single
// quotes (none of ours holds a quote or a backslash), and returns its path.
func writeArgFile(dir string, args []string) (string, error) {
	var b strings.Builder
	for _, a := range args {
		if strings.ContainsAny(a, "'\\\n") {
			return "", errors.New("localkafka: an argument with a quote, backslash or newline cannot go in a java @argfile")
		}
		b.WriteString("'" + a + "'\n")
	}
	path := filepath.Join(dir, "format.args")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("localkafka: write %s: %w", path, err)
	}
	return path, nil
}
