package ehrsim

import (
	"fmt"
	"os"
	"strings"
)

// RegisterClientFiles registers the clients of serve-ehr's --client flags, ID=JWKS_FILE
// each: the client authenticates with a key of the JWKS in the file.
func (s *Server) RegisterClientFiles(specs []string) error {
	for _, c := range specs {
		id, file, ok := strings.Cut(c, "=")
		if !ok {
			return fmt.Errorf("--client %q: want ID=JWKS_FILE", c)
		}
		jwks, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--client %s: %w", id, err)
		}
		if err := s.RegisterClient(id, jwks); err != nil {
			return err
		}
	}
	return nil
}

// RegisterSecretClientFiles registers the clients of serve-ehr's --secret-client flags,
// ID=SECRET_FILE each: the client authenticates with the secret in the file (surrounding
// white space removed).
func (s *Server) RegisterSecretClientFiles(specs []string) error {
	for _, c := range specs {
		id, file, ok := strings.Cut(c, "=")
		if !ok {
			return fmt.Errorf("--secret-client %q: want ID=SECRET_FILE", c)
		}
		secret, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--secret-client %s: %w", id, err)
		}
		if err := s.RegisterSecretClient(id, strings.TrimSpace(string(secret))); err != nil {
			return err
		}
	}
	return nil
}
