package producer_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/producer"
	"github.com/fhirstream/fhirstream/producer/bulk"
)

// TestIntegrationFetchQuirks runs fetch against the simulator with each reference-server
// quirk switched on. Without --accept-quirk the run fails, names the quirk and leaves the
// export unfinished; the same command again with the quirk accepted resumes that export,
// reconciles with a warning, completes and releases it. Across both runs every resource
// lands exactly once.
func TestIntegrationFetchQuirks(t *testing.T) {
	cases := []struct {
		quirk     bulk.Quirk
		sim       ehrsim.Config
		organized bool
		reconcile bool // the quirk shows in reconciliation (else it stops the first run early)
		wantTypes map[string]int
		deleted   int
	}{
		{quirk: bulk.QuirkRetryAfterEpochMillis, sim: ehrsim.Config{Faults: ehrsim.Faults{RetryAfterEpochMillis: true}}},
		{quirk: bulk.QuirkManifestCount, sim: ehrsim.Config{ResourcesPerFile: 7, Faults: ehrsim.Faults{WrongCount: true}}, reconcile: true},
		{quirk: bulk.QuirkContinuesOffByOne, sim: ehrsim.Config{ResourcesPerFile: 3, Faults: ehrsim.Faults{ContinuesOffByOne: true}},
			organized: true, reconcile: true, wantTypes: map[string]int{"Patient": 5, "Observation": 20}},
		{quirk: bulk.QuirkOverlappingDeleted, sim: ehrsim.Config{Faults: ehrsim.Faults{DeletedLines: 5, OverlappingDeleted: true}},
			reconcile: true, deleted: 5},
	}
	for _, tc := range cases {
		t.Run(string(tc.quirk), func(t *testing.T) {
			tc.sim.Dir = small
			srv, err := ehrsim.New(tc.sim)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			c := testkafka.New(t)
			cfg := fastConfig(c, srv.URL)
			if tc.organized {
				cfg.Export.Level, cfg.Export.OrganizeOutputBy = bulk.LevelPatient, "Patient"
			}
			want := tc.wantTypes
			if want == nil {
				want = sourceCounts(srv)
			}

			first, err := producer.Fetch(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), "--accept-quirk "+string(tc.quirk)) {
				t.Fatalf("without --accept-quirk: err %v, want one naming the quirk", err)
			}
			t.Logf("without --accept-quirk: %v", err)
			if tc.reconcile != errors.Is(err, producer.ErrReconcile) || first.OK() {
				t.Errorf("first run: reconciliation error %v (want %v), OK %v", errors.Is(err, producer.ErrReconcile), tc.reconcile, first.OK())
			}
			if srv.Stats().Deletes.Load() != 0 {
				t.Error("a failed export was released")
			}

			cfg.Accept = bulk.Quirks{tc.quirk}
			second, err := producer.Fetch(context.Background(), cfg)
			if err != nil || !second.OK() {
				t.Fatalf("with --accept-quirk: %v (mismatches %v)", err, second.Mismatches)
			}
			t.Logf("with --accept-quirk: warnings %q", second.Accepted)
			if tc.reconcile && (len(second.Accepted) == 0 || second.RunResources != 0) {
				t.Errorf("second run: accepted %v, published %d more (want a warning and nothing more)", second.Accepted, second.RunResources)
			}
			if k, d := srv.Stats().Kickoffs.Load(), srv.Stats().Deletes.Load(); k != 1 || d != 1 {
				t.Errorf("%d kickoffs and %d releases, want the one export resumed and released", k, d)
			}
			got := readLanded(t, c, append(keys(want), "Patient")) // fails on any duplicate
			for typ, n := range want {
				if got.byType[typ] != n {
					t.Errorf("%s: %d records, want %d", typ, got.byType[typ], n)
				}
			}
			if got.tombstones["Patient"] != tc.deleted {
				t.Errorf("%d tombstones, want %d (one per deleted resource)", got.tombstones["Patient"], tc.deleted)
			}

			// A third run starts a new export: the accepted one is complete.
			if _, err := producer.Fetch(context.Background(), cfg); err != nil {
				t.Fatalf("third run: %v", err)
			}
			if k := srv.Stats().Kickoffs.Load(); k != 2 {
				t.Errorf("%d kickoffs after the third run, want 2", k)
			}
		})
	}
}

// TestIntegrationFetchReusedStatusURL runs the same command twice against a server that
// hands out one status URL for every export. The second export is new data at an old
// URL: it must be published, not skipped as already done.
func TestIntegrationFetchReusedStatusURL(t *testing.T) {
	srv, err := ehrsim.New(ehrsim.Config{Dir: small, Faults: ehrsim.Faults{ReuseStatusURL: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := testkafka.New(t)
	cfg := fastConfig(c, srv.URL)
	first, err := producer.Fetch(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	second, err := producer.Fetch(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range sourceCounts(srv) {
		total += n
	}
	if first.StatusURL != second.StatusURL || first.TransactionTime.Equal(second.TransactionTime) {
		t.Fatalf("status URLs %s and %s, transaction times %s and %s: the server did not reuse the URL for a new export",
			first.StatusURL, second.StatusURL, first.TransactionTime, second.TransactionTime)
	}
	if second.RunResources != int64(total) || !second.OK() {
		t.Errorf("the second export published %d of %d resources (OK %v): a reused status URL looked done", second.RunResources, total, second.OK())
	}
}
