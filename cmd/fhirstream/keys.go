package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/producer/smart"
)

func newKeysCmd() *cobra.Command {
	keys := &cobra.Command{Use: "keys", Short: "Manage SMART Backend Services client keys"}
	var alg, kid, out, jwksOut string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Generate a client key: the private JWK goes to --out (mode 0600), the public JWKS to stdout (and --jwks-out)",
		Long: `Generate an RS384 (RSA 2048) or ES384 (P-384) key for SMART Backend Services.
The private key is written as a JWK to --out with file mode 0600; the public key set
printed on stdout is what you register with the EHR (or serve at your jku URL). Without
--kid the key id is the key's RFC 7638 thumbprint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("keys generate: --out is required")
			}
			k, err := smart.GenerateKey(alg, kid)
			if err != nil {
				return err
			}
			pb, err := smart.WriteKeyFiles(k, out, jwksOut)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(pb)
			return err
		},
	}
	gen.Flags().StringVar(&alg, "alg", smart.AlgES384, "signing algorithm: RS384 or ES384")
	gen.Flags().StringVar(&kid, "kid", "", "key id, sent in the assertion header (default: the key's RFC 7638 thumbprint)")
	gen.Flags().StringVar(&out, "out", "", "file to write the private JWK to (created with mode 0600)")
	gen.Flags().StringVar(&jwksOut, "jwks-out", "", "also write the public JWKS to this file (it is printed on stdout either way)")
	keys.AddCommand(gen)
	return keys
}
