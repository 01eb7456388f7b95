package deid

import (
	"context"
	"testing"

	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/testkafka"
)

// BenchmarkApplyPaths measures Apply on the resources of BenchmarkApply by each path:
// one-pass (falling back to the tree path for what it declines, as the stage runs) and
// tree only (what a resource the one-pass path declines costs: escapes, non-ASCII text,
// companions, where() rules).
//
//	go test -run '^$' -bench BenchmarkApplyPaths ./consumers/deid
func BenchmarkApplyPaths(b *testing.B) {
	var lines [][]byte
	err := synth.Generate(context.Background(), synth.Config{Patients: 300, Seed: 1}, func(_ string, line []byte) error {
		lines = append(lines, append([]byte(nil), line...))
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := Preset("safe-harbor-dateshift")
	if err != nil {
		b.Fatal(err)
	}
	keys := Keys{CryptoHash: []byte("bench-crypto-hash-key"), DateShift: []byte("bench-date-shift-key")}
	for _, p := range []struct {
		name string
		opts []Option
	}{{"one-pass", nil}, {"tree", []Option{treePathOnly()}}} {
		b.Run(p.name, func(b *testing.B) {
			e, err := New(cfg, keys, p.opts...)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var buf []byte
			cpu0, n := testkafka.ProcessCPU(), 0
			for ; b.Loop(); n++ {
				res, err := e.Apply(buf[:0], lines[n%len(lines)])
				if err != nil {
					b.Fatal(err)
				}
				buf = res.JSON
			}
			b.ReportMetric(float64(testkafka.ProcessCPU()-cpu0)/float64(n), "cpu-ns/op")
		})
	}
}
