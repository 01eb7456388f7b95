//go:build gcs

package sink

// The native Google Cloud Storage driver (gs:// URLs), left out of default builds because
// it adds about 30 MB to the binary; build with -tags gcs to include it.
import _ "gocloud.dev/blob/gcsblob"
