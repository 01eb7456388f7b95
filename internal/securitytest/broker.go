// Package securitytest gives security integration tests a real Kafka broker that
// requires authentication and enforces ACLs: deploy/kafka/kafka-local.sh started with
// --security secure (SASL_SSL with SCRAM-SHA-512 and OAUTHBEARER, mutual TLS, the
// StandardAuthorizer with no allow-everyone), one per test binary, on free ports. It
// makes principals (SCRAM users through the admin API, client certificates signed by
// the broker's CA) and grants them ACLs, so a test can run each command under its own
// principal.
//
// Tests using it run only against a real broker (FHIRSTREAM_TEST_BROKERS set, as in
// CI) and never under -short: starting a broker takes seconds and needs Java.
package securitytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/fhirstream/fhirstream/internal/acl"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/testkafka"
)

// Environment variables that pin the secure broker's port (it uses the port, +1 for the
// controller and +2 for mTLS) and its state dir, for a machine whose ports are shared.
const (
	EnvPort = "FHIRSTREAM_SECURE_KAFKA_PORT"
	EnvDir  = "FHIRSTREAM_SECURE_KAFKA_DIR"
)

// Mode is how a client authenticates.
type Mode string

// Modes.
const (
	SASLSSL Mode = "sasl_ssl" // SCRAM-SHA-512 over TLS
	MTLS    Mode = "mtls"     // a client certificate; the principal is User:<CN>
)

// Broker is a running secure broker.
type Broker struct {
	// SASLAddr and MTLSAddr are the listeners, host:port.
	SASLAddr, MTLSAddr string
	// Dir is the broker's state dir; SecurityDir holds its CA, certificates and keys.
	Dir, SecurityDir string
	script           string
	adminPassword    string
}

// Script is deploy/kafka/kafka-local.sh of this source tree.
func Script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "kafka", "kafka-local.sh")
}

// Start starts a secure broker on port (0: free ports found here) with state in dir ("":
// a new temporary dir).
func Start(ctx context.Context, port int, dir string) (*Broker, error) {
	if port == 0 {
		p, err := freePorts(3)
		if err != nil {
			return nil, err
		}
		port = p
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "fhirstream-secure-kafka-")
		if err != nil {
			return nil, err
		}
		dir = d
	}
	b := &Broker{Dir: dir, SecurityDir: filepath.Join(dir, "security"), script: Script()}
	out, err := b.run(ctx, "start", "--port", strconv.Itoa(port), "--security", "secure")
	if err != nil {
		return nil, err
	}
	b.SASLAddr = strings.TrimSpace(out)
	b.MTLSAddr = "127.0.0.1:" + strconv.Itoa(port+2)
	pw, err := os.ReadFile(filepath.Join(b.SecurityDir, "admin.password"))
	if err != nil {
		return nil, fmt.Errorf("secure broker: %w", err)
	}
	b.adminPassword = strings.TrimSpace(string(pw))
	return b, nil
}

// Stop stops the broker and removes its state dir.
func (b *Broker) Stop() error {
	_, err := b.run(context.Background(), "stop")
	return err
}

func (b *Broker) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{b.script}, append(args, "--dir", b.Dir)...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kafka-local.sh %s: %w\n%s", args[0], err, stderr.String())
	}
	return stdout.String(), nil
}

// freePorts finds n consecutive free ports on 127.0.0.1.
func freePorts(n int) (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if p+n >= 65535 {
			continue
		}
		free := true
		for i := 1; i < n && free; i++ {
			if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p+i), 200*time.Millisecond); err == nil {
				_ = c.Close()
				free = false
			}
		}
		if free {
			return p, nil
		}
	}
	return 0, errors.New("no free port range for the secure broker")
}

// AdminConfig is a client configuration of the super user admin over mode.
func (b *Broker) AdminConfig(mode Mode) kafkaclient.Config {
	c := kafkaclient.Defaults()
	c.ClientID = "fhirstream-securitytest-admin"
	c.TLSCAFile = filepath.Join(b.SecurityDir, "ca.pem")
	switch mode {
	case MTLS:
		c.Brokers = []string{b.MTLSAddr}
		c.TLSCertFile = filepath.Join(b.SecurityDir, "admin.pem")
		c.TLSKeyFile = filepath.Join(b.SecurityDir, "admin-key.pem")
	default:
		c.Brokers = []string{b.SASLAddr}
		c.SASLMechanism, c.SASLUser, c.SASLPassword = "SCRAM-SHA-512", "admin", b.adminPassword
	}
	return c
}

// Admin returns an admin client of the super user, closed when tb ends.
func (b *Broker) Admin(tb testing.TB) *kadm.Client {
	tb.Helper()
	c := b.AdminConfig(SASLSSL)
	cl, err := c.NewClient()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// NewPrincipal makes the principal User:name for mode: a SCRAM-SHA-512 user with a
// random password, or a client certificate with CN=name signed by the broker's CA. It
// holds no ACL yet. The returned configuration connects as it.
func (b *Broker) NewPrincipal(ctx context.Context, adm *kadm.Client, mode Mode, name string) (kafkaclient.Config, error) {
	c := kafkaclient.Defaults()
	c.ClientID = name
	c.TLSCAFile = filepath.Join(b.SecurityDir, "ca.pem")
	switch mode {
	case MTLS:
		if _, err := b.run(ctx, "cert", name); err != nil {
			return c, err
		}
		c.Brokers = []string{b.MTLSAddr}
		c.TLSCertFile = filepath.Join(b.SecurityDir, name+".pem")
		c.TLSKeyFile = filepath.Join(b.SecurityDir, name+"-key.pem")
	default:
		pw := randomHex(16)
		res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: name, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: pw}})
		if err == nil {
			err = res.Error()
		}
		if err != nil {
			return c, fmt.Errorf("SCRAM user %s: %w", name, err)
		}
		c.Brokers = []string{b.SASLAddr}
		c.SASLMechanism, c.SASLUser, c.SASLPassword = "SCRAM-SHA-512", name, pw
		// A new SCRAM credential reaches the broker's credential cache through the
		// metadata log: wait until the user can log in.
		if err := waitLogin(ctx, c); err != nil {
			return c, err
		}
	}
	return c, nil
}

// waitLogin polls until c authenticates (an ApiVersions round trip after SASL).
func waitLogin(ctx context.Context, c kafkaclient.Config) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cl, err := c.NewClient()
		if err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = kadm.NewClient(cl).ApiVersions(pctx)
		cancel()
		cl.Close()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("user %s cannot log in: %w", c.SASLUser, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Principal is the ACL principal of a configuration NewPrincipal made.
func Principal(c kafkaclient.Config) string { return "User:" + c.ClientID }

// Grant creates grants for c's principal, failing tb on error.
func Grant(tb testing.TB, adm *kadm.Client, c kafkaclient.Config, grants ...acl.Grant) {
	tb.Helper()
	if err := acl.Apply(context.Background(), adm, Principal(c), grants); err != nil {
		tb.Fatal(err)
	}
}

// Revoke deletes grants of c's principal, failing tb on error.
func Revoke(tb testing.TB, adm *kadm.Client, c kafkaclient.Config, grants ...acl.Grant) {
	tb.Helper()
	if err := acl.Revoke(context.Background(), adm, Principal(c), grants); err != nil {
		tb.Fatal(err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Suffix is a random name part, so runs on one broker never share principals or topics.
func Suffix() string { return randomHex(4) }

var (
	sharedOnce sync.Once
	shared     *Broker
	sharedErr  error
)

// Shared returns the test binary's secure broker, starting it on first use; tb is
// skipped under -short and when FHIRSTREAM_TEST_BROKERS names no real broker. The test
// binary's TestMain must call StopShared after m.Run.
func Shared(tb testing.TB) *Broker {
	tb.Helper()
	if testing.Short() {
		tb.Skip("secure broker: skipped under -short")
	}
	if !testkafka.Real() {
		tb.Skip("secure broker: runs with a real broker only (FHIRSTREAM_TEST_BROKERS)")
	}
	sharedOnce.Do(func() {
		port := 0
		if v := os.Getenv(EnvPort); v != "" {
			port, sharedErr = strconv.Atoi(v)
			if sharedErr != nil {
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		shared, sharedErr = Start(ctx, port, os.Getenv(EnvDir))
	})
	if sharedErr != nil {
		tb.Fatalf("secure broker: %v", sharedErr)
	}
	return shared
}

// StopShared stops the shared broker if one was started.
func StopShared() {
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "secure broker:", err)
		}
	}
}
