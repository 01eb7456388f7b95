package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// validateOAuth checks the OAUTHBEARER settings without contacting the provider.
func (c *Config) validateOAuth() error {
	if c.OAuthTokenURL == "" || c.OAuthClientID == "" {
		return errors.New("SASL OAUTHBEARER needs --sasl-oauth-token-url and --sasl-oauth-client-id")
	}
	if c.OAuthClientSecret != "" && c.OAuthClientSecretFile != "" {
		return errors.New("give the OAUTHBEARER client secret once: --sasl-oauth-client-secret or --sasl-oauth-client-secret-file")
	}
	u, err := url.Parse(c.OAuthTokenURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--sasl-oauth-token-url %q is not a URL", c.OAuthTokenURL)
	}
	// The client secret goes to this URL: only over TLS, unless it never leaves the host.
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
		return fmt.Errorf("--sasl-oauth-token-url %s: the client secret is sent there, so it must be https (plain http only on a loopback address)", u.Redacted())
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// oauthMechanism is OAUTHBEARER with tokens from the OIDC client-credentials grant.
// golang.org/x/oauth2 caches a token and fetches a new one shortly before it expires;
// franz-go asks for one on every new connection and re-authentication (KIP-368), so
// long-lived connections get fresh tokens too.
func (c *Config) oauthMechanism() (sasl.Mechanism, error) {
	secret := c.OAuthClientSecret
	if c.OAuthClientSecretFile != "" {
		b, err := os.ReadFile(c.OAuthClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("OAUTHBEARER client secret file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	cc := clientcredentials.Config{ClientID: c.OAuthClientID, ClientSecret: secret,
		TokenURL: c.OAuthTokenURL, Scopes: c.OAuthScopes, AuthStyle: oauth2.AuthStyleInHeader}
	// The source outlives any one request, so it gets a context of its own; each
	// fetch is bounded by the HTTP client's timeout below.
	src := cc.TokenSource(context.WithValue(context.Background(), oauth2.HTTPClient, tokenHTTPClient))
	return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
		tok, err := src.Token()
		if err != nil {
			return oauth.Auth{}, fmt.Errorf("OAUTHBEARER token from %s for client %s: %w", redactedURL(c.OAuthTokenURL), c.OAuthClientID, err)
		}
		return oauth.Auth{Token: tok.AccessToken}, nil
	}), nil
}

func redactedURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "the token URL"
	}
	u.RawQuery = ""
	return u.Redacted()
}

// awsMSKIAMMechanism is Amazon MSK's IAM mechanism with credentials from the AWS SDK's
// default chain (environment, shared config and credentials files, SSO, web identity
// for EKS service accounts, the EC2 or ECS instance role), retrieved anew, and so
// refreshed, for every authentication.
func awsMSKIAMMechanism() sasl.Mechanism {
	return aws.ManagedStreamingIAM(func(ctx context.Context) (aws.Auth, error) {
		cfg, err := awsconfig.LoadDefaultConfig(ctx)
		if err != nil {
			return aws.Auth{}, fmt.Errorf("AWS_MSK_IAM: loading AWS credentials: %w", err)
		}
		creds, err := cfg.Credentials.Retrieve(ctx)
		if err != nil {
			return aws.Auth{}, fmt.Errorf("AWS_MSK_IAM: retrieving AWS credentials: %w", err)
		}
		return aws.Auth{AccessKey: creds.AccessKeyID, SecretKey: creds.SecretAccessKey, SessionToken: creds.SessionToken}, nil
	})
}

// tokenHTTPClient fetches OAUTHBEARER tokens: TLS verified with the system roots, and a
// bounded wait, so a provider that hangs fails the connection instead of stalling it.
var tokenHTTPClient = &http.Client{Timeout: 30 * time.Second}
