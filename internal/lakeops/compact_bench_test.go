package lakeops_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/lakeops"
)

// BenchmarkCompactWideRows compacts a bronze table as a sink leaves it, files of rows
// that each hold a resource's JSON of about 1.3 KB (one row group a file), and reports
// the peak of the Go heap during the compaction beside the time: 60 files of 2,000 rows
// (about 150 MB of row values), four times as many such files, and 60 files of four
// times the rows. What a compaction holds at once is a few batches and one row group of
// the file it reads and of the file it writes (compact.go), so the size of the row
// groups it reads matters more than the size of the table:
//
//	go test -run '^$' -bench CompactWideRows -benchtime 3x ./internal/lakeops
func BenchmarkCompactWideRows(b *testing.B) {
	for _, c := range []struct{ files, rowsPerFile int }{{60, 2000}, {240, 2000}, {60, 8000}} {
		b.Run(fmt.Sprintf("files=%d,rows=%d", c.files, c.files*c.rowsPerFile), func(b *testing.B) {
			benchCompactWideRows(b, c.files, c.rowsPerFile)
		})
	}
}

func benchCompactWideRows(b *testing.B, files, rowsPerFile int) {
	ctx := context.Background()
	var peaks []float64
	for i := range b.N {
		b.StopTimer()
		lake, id, rowBytes := wideTable(b, ctx, files, rowsPerFile)
		runtime.GC()
		sampler := startHeapSampler()
		b.StartTimer()
		res, err := lakeops.Compact(ctx, lake.Catalog, id, lakeops.CompactOptions{})
		b.StopTimer()
		peak := sampler.stop()
		if err != nil {
			b.Fatal(err)
		}
		if res.DataFilesBefore != files || res.DataFilesAfter != 1 {
			b.Fatalf("compaction %d: data files %d -> %d, want %d -> 1", i, res.DataFilesBefore, res.DataFilesAfter, files)
		}
		lake.Close()
		peaks = append(peaks, float64(peak)/1e6)
		if i == 0 {
			b.ReportMetric(float64(rowBytes)/1e6, "MB-of-rows")
		}
	}
	var sum float64
	for _, p := range peaks {
		sum += p
	}
	b.ReportMetric(sum/float64(len(peaks)), "peak-heap-MB")
}

// wideTable makes a lake with one bronze table of files×rowsPerFile rows, one data
// file per commit as a sink writes them, and returns the bytes of its row values.
func wideTable(b *testing.B, ctx context.Context, files, rowsPerFile int) (*lakehouse.Lake, []string, int64) {
	b.Helper()
	lake, err := lakehouse.Open(ctx, lakehouse.Config{Out: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	l, err := lakehouse.BronzeLayout("Observation")
	if err != nil {
		b.Fatal(err)
	}
	tbl, err := lake.EnsureTable(ctx, l)
	if err != nil {
		b.Fatal(err)
	}
	fsys, err := tbl.FS(ctx)
	if err != nil {
		b.Fatal(err)
	}
	wfs := fsys.(iceio.WriteFileIO)
	loc, err := tbl.LocationProvider()
	if err != nil {
		b.Fatal(err)
	}
	var rowBytes int64
	for f := range files {
		rows := make([]parquet.Row, rowsPerFile)
		for r := range rows {
			n := int64(f*rowsPerFile + r)
			rows[r] = wideRow(b, l, n)
			for _, v := range rows[r] {
				if v.Kind() == parquet.ByteArray && !v.IsNull() {
					rowBytes += int64(len(v.ByteArray()))
				}
			}
		}
		df, err := l.WriteData(wfs, loc.NewDataLocation(fmt.Sprintf("batch-%d.parquet", f)), rows, lakehouse.FileOptions{})
		if err != nil {
			b.Fatal(err)
		}
		tx := tbl.NewTransaction()
		if err := tx.AddDataFiles(ctx, []iceberg.DataFile{df}, nil); err != nil {
			b.Fatal(err)
		}
		if tbl, err = tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return lake, lake.Ident(l), rowBytes
}

// wideRow is bronze row n: an Observation's JSON of about 1.3 KB with values that vary
// by row, so that it compresses about as a real export does.
func wideRow(b *testing.B, l *lakehouse.Layout, n int64) parquet.Row {
	b.Helper()
	id := fmt.Sprintf("obs-%08d-%x", n, n*2654435761)
	patient := fmt.Sprintf("Patient/p-%06d", n/97)
	at := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n) * 37 * time.Minute)
	resource := fmt.Sprintf(`{"resourceType":"Observation","id":%q,"meta":{"versionId":"1","lastUpdated":%q,"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"]},"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory","display":"Laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"%d-%d","display":"Glucose [Mass/volume] in Blood, specimen %d"}],"text":"Glucose"},"subject":{"reference":%q},"encounter":{"reference":"Encounter/e-%07d"},"effectiveDateTime":%q,"issued":%q,"valueQuantity":{"value":%d.%02d,"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"},"referenceRange":[{"low":{"value":70,"unit":"mg/dL"},"high":{"value":%d,"unit":"mg/dL"},"text":"normal range for the assay, adults, fasting"}],"interpretation":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation","code":"N","display":"Normal"}]}],"note":[{"text":"sample %x collected at site %d, processed by analyser %d, reviewed"}]}`,
		id, at.Format(time.RFC3339), 2000+n%300, n%10, n%7, patient, n/11, at.Format(time.RFC3339), at.Add(time.Hour).Format(time.RFC3339), 60+n%90, n%100, 99+n%3, n*40503, n%17, n%5)
	row := make(parquet.Row, len(l.Columns))
	for i, c := range l.Columns {
		v := parquet.NullValue()
		switch c.Name {
		case lakehouse.ColID:
			v = parquet.ByteArrayValue([]byte(id))
		case lakehouse.ColResourceType:
			v = parquet.ByteArrayValue([]byte("Observation"))
		case lakehouse.ColVersionID:
			v = parquet.ByteArrayValue([]byte("1"))
		case lakehouse.ColLastUpdated, lakehouse.ColKafkaTimestamp:
			v = parquet.Int64Value(at.UnixMicro())
		case lakehouse.ColPatientRef:
			v = parquet.ByteArrayValue([]byte(patient))
		case lakehouse.ColResource:
			v = parquet.ByteArrayValue([]byte(resource))
		case lakehouse.ColDeleted:
			v = parquet.BooleanValue(false)
		case lakehouse.ColFHIRKey:
			v = parquet.ByteArrayValue([]byte("Observation/" + id))
		case lakehouse.ColKafkaPartition:
			v = parquet.Int32Value(int32(n % 6))
		case lakehouse.ColKafkaOffset, lakehouse.ColSourceLine:
			v = parquet.Int64Value(n)
		default:
			if c.Required {
				b.Fatalf("wideRow has no value for required column %s", c.Name)
			}
		}
		def := 0
		if !c.Required && !v.IsNull() {
			def = 1
		}
		row[i] = v.Level(0, def, i)
	}
	return row
}

// heapSampler records the peak of the Go heap's live and not yet swept objects.
type heapSampler struct {
	done chan struct{}
	wg   sync.WaitGroup
	peak uint64
}

func startHeapSampler() *heapSampler {
	s := &heapSampler{done: make(chan struct{})}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(sample)
		s.peak = max(s.peak, sample[0].Value.Uint64())
	}
	read()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				read()
				return
			case <-t.C:
				read()
			}
		}
	}()
	return s
}

func (s *heapSampler) stop() uint64 {
	close(s.done)
	s.wg.Wait()
	return s.peak
}
