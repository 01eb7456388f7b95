package lakehouse_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/klauspost/compress/zstd"
	pqzstd "github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/synth"
)

// syntheticNDJSON is generated resources, one per line, at least n bytes of them.
func syntheticNDJSON(t testing.TB, n int) []byte {
	var b []byte
	err := synth.Generate(context.Background(), synth.Config{Patients: 20, Seed: 7}, func(_ string, line []byte) error {
		if len(b) < n {
			b = append(append(b, line...), '\n')
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < n {
		t.Fatalf("generated %d bytes, want %d", len(b), n)
	}
	return b[:n]
}

// The small window changes nothing for a page within it: the pages are those
// parquet-go's own zstd codec writes at the same level, byte for byte.
func TestZstdCodecSameOutput(t *testing.T) {
	data := syntheticNDJSON(t, 256<<10)
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		ours := &lakehouse.ZstdCodec{Level: level}
		theirs := &pqzstd.Codec{Level: level}
		for _, n := range []int{0, 1, 100, 4 << 10, 100 << 10, 256 << 10} {
			got, err := ours.Encode(nil, data[:n])
			if err != nil {
				t.Fatal(err)
			}
			want, err := theirs.Encode(nil, data[:n])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("level %v, %d bytes: %d compressed bytes differ from parquet-go's %d", level, n, len(got), len(want))
			}
			back, err := theirs.Decode(nil, got)
			if err != nil || !bytes.Equal(back, data[:n]) {
				t.Errorf("level %v, %d bytes: parquet-go's codec does not read the page back (%v)", level, n, err)
			}
		}
	}
}

// A page larger than the window (a page buffer raised above it) still round-trips, by
// this codec and by parquet-go's.
func TestZstdCodecLargePage(t *testing.T) {
	data := syntheticNDJSON(t, 3<<20)
	ours := &lakehouse.ZstdCodec{Level: zstd.SpeedFastest}
	enc, err := ours.Encode(make([]byte, 10), data)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) >= len(data)/3 {
		t.Errorf("%d bytes compressed to %d: no compression?", len(data), len(enc))
	}
	for name, c := range map[string]interface {
		Decode(dst, src []byte) ([]byte, error)
	}{"ours": ours, "parquet-go": &pqzstd.Codec{}} {
		back, err := c.Decode(nil, enc)
		if err != nil || !bytes.Equal(back, data) {
			t.Errorf("%s: the page does not decode to its input (%v)", name, err)
		}
	}
}

// The codec's memory: an encoder's history is sized by the window, not zstd's 8 MiB
// default (the reason the codec exists).
func BenchmarkZstdCodecEncode(b *testing.B) {
	data := syntheticNDJSON(b, 256<<10)
	for name, c := range map[string]interface {
		Encode(dst, src []byte) ([]byte, error)
	}{"lakehouse": &lakehouse.ZstdCodec{Level: zstd.SpeedFastest}, "parquet-go": &pqzstd.Codec{Level: zstd.SpeedFastest}} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			var out []byte
			for b.Loop() {
				out, _ = c.Encode(out, data)
			}
		})
	}
}
