package producer

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"

	"github.com/fhirstream/fhirstream/producer/bulk"
	"github.com/fhirstream/fhirstream/producer/ehrhttp"
	"github.com/fhirstream/fhirstream/producer/smart"
)

// bulkClient builds the Bulk Data client of an export: the token policy of its FHIR base
// (and the trusted origins), TLS, the limits, and the token source its credentials call
// for.
func (cfg *Config) bulkClient(ctx context.Context) (*bulk.Client, error) {
	base := cfg.Export.Base
	if base == "" {
		base = cfg.Resume // --resume alone: the status URL's origin is the server's
	}
	policy, err := ehrhttp.NewPolicy(base, cfg.TrustOrigins)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	var roots *x509.CertPool
	if cfg.CAFile != "" {
		if roots, err = ehrhttp.LoadCAFile(cfg.CAFile); err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
	}
	hc := ehrhttp.NewClient(ehrhttp.Options{RootCAs: roots})
	bc := &bulk.Client{HTTP: hc, Policy: policy, Log: cfg.Log, MinPoll: cfg.MinPoll, Backoff: cfg.Backoff,
		MaxWait: cfg.MaxWait, IdleTimeout: cfg.IdleTimeout, MaxFileBytes: cfg.MaxFileBytes, Accept: cfg.Accept,
		OnPoll: func(status int, _ string) { metricPolls.WithLabelValues(fmt.Sprint(status)).Inc() }}
	if bc.Auth, err = cfg.tokenSource(ctx, hc, policy, base); err != nil {
		return nil, err
	}
	return bc, nil
}

// tokenSource returns what supplies the access token: a file's token, a SMART client,
// or nil for an open server.
func (cfg *Config) tokenSource(ctx context.Context, hc *http.Client, policy *ehrhttp.Policy, base string) (bulk.TokenSource, error) {
	if cfg.BearerTokenFile != "" {
		cfg.warnFileMode(cfg.BearerTokenFile)
		return &smart.FileToken{Path: cfg.BearerTokenFile}, nil
	}
	hasSecret := cfg.ClientSecret != "" || cfg.ClientSecretFile != ""
	if cfg.TokenURL == "none" || (cfg.KeyFile == "" && !hasSecret && cfg.TokenURL == "" && cfg.AuthMethod == "") {
		return nil, nil
	}
	method, err := cfg.authMethod(hasSecret)
	if err != nil {
		return nil, err
	}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("fetch: %s needs --smart-client-id", method)
	}
	client := &smart.Client{ClientID: cfg.ClientID, Method: method, Scope: cfg.Scope, HTTP: hc}
	if method == smart.PrivateKeyJWT {
		if cfg.KeyFile == "" {
			return nil, errors.New("fetch: SMART auth needs --key (or --token-url none for an open server)")
		}
		cfg.warnFileMode(cfg.KeyFile)
		if client.Key, err = smart.LoadKey(cfg.KeyFile, cfg.KeyID, cfg.KeyAlg); err != nil {
			return nil, err
		}
		client.Key.JKU = cfg.JKU
	} else if client.Secret, err = cfg.secret(method); err != nil {
		return nil, err
	}
	client.TokenURL = cfg.TokenURL
	if client.TokenURL == "" {
		conf, err := smart.Discover(ctx, hc, base, policy)
		if err != nil {
			return nil, err
		}
		client.TokenURL = conf.TokenEndpoint
	} else if err := policy.TokenEndpointAllowed(client.TokenURL); err != nil {
		return nil, fmt.Errorf("fetch: --token-url: %w", err)
	}
	return client, nil
}

// authMethod is the configured token endpoint auth method, or the one the credentials
// imply: a secret means client_secret_basic, a key private_key_jwt.
func (cfg *Config) authMethod(hasSecret bool) (smart.AuthMethod, error) {
	if cfg.AuthMethod != "" {
		m, err := smart.ParseAuthMethod(cfg.AuthMethod)
		if err != nil {
			return "", fmt.Errorf("fetch: --smart-auth: %w", err)
		}
		if m == smart.PrivateKeyJWT && hasSecret || m != smart.PrivateKeyJWT && cfg.KeyFile != "" {
			return "", fmt.Errorf("fetch: --smart-auth %s does not go with the credentials given (a key is for %s, a secret for the client_secret methods)", m, smart.PrivateKeyJWT)
		}
		return m, nil
	}
	if hasSecret {
		if cfg.KeyFile != "" {
			return "", errors.New("fetch: give a key or a client secret, not both")
		}
		return smart.ClientSecretBasic, nil
	}
	return smart.PrivateKeyJWT, nil
}

// secret is the client secret: from ClientSecretFile, else from the environment.
func (cfg *Config) secret(method smart.AuthMethod) (string, error) {
	if cfg.ClientSecretFile != "" {
		cfg.warnFileMode(cfg.ClientSecretFile)
		s, err := smart.ReadSecretFile(cfg.ClientSecretFile)
		if err != nil {
			return "", fmt.Errorf("fetch: client secret: %w", err)
		}
		return s, nil
	}
	if cfg.ClientSecret == "" {
		return "", fmt.Errorf("fetch: %s needs a client secret: --smart-client-secret-file FILE, or the environment variable %s", method, ClientSecretEnv)
	}
	return cfg.ClientSecret, nil
}

// warnFileMode warns when a file holding a credential is open to others.
func (cfg *Config) warnFileMode(path string) {
	if problem := smart.FileModeProblem(path); problem != "" {
		cfg.Log.Warn("fetch: a credential file is exposed: " + problem)
	}
}
