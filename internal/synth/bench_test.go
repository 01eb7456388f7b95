package synth

import (
	"context"
	"testing"
)

// BenchmarkGenerate measures the generator alone: resources and bytes per second into
// an emit that only counts.
func BenchmarkGenerate(b *testing.B) {
	const patients = 100
	var resources, size int64
	emit := func(_ string, line []byte) error {
		resources++
		size += int64(len(line)) + 1
		return nil
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := Generate(context.Background(), Config{Patients: patients, Seed: uint64(i)}, emit); err != nil {
			b.Fatal(err)
		}
	}
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(resources)/secs, "resources/s")
	b.ReportMetric(float64(size)/1e6/secs, "MB/s")
	b.ReportMetric(float64(resources)/float64(b.N)/patients, "resources/patient")
}

// BenchmarkWriteDirGzip measures the whole command path with compression.
func BenchmarkWriteDirGzip(b *testing.B) {
	const patients = 100
	dir := b.TempDir()
	var resources, size int64
	for i := 0; b.Loop(); i++ {
		c, err := WriteDir(context.Background(), Config{Patients: patients, Seed: uint64(i), Gzip: true}, dir)
		if err != nil {
			b.Fatal(err)
		}
		resources += c.Total()
		size += c.TotalBytes()
	}
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(resources)/secs, "resources/s")
	b.ReportMetric(float64(size)/1e6/secs, "MB/s")
}
