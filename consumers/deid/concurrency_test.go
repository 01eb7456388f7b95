package deid

import (
	"fmt"
	"sync"
	"testing"
)

// TestConcurrentApply runs one engine from several goroutines at once (as the stage does
// with ConcurrentPartitions) and checks every result against the same engine's result
// for the resource alone. Run with -race: each worker's path states, caches and
// buffers must stay its own.
func TestConcurrentApply(t *testing.T) {
	inputs := goldenInputs(t, 8, false)
	cfg, err := Preset("safe-harbor-dateshift")
	if err != nil {
		t.Fatal(err)
	}
	keys := Keys{CryptoHash: []byte("concurrent-crypto-hash-key"), DateShift: []byte("concurrent-date-shift-key")}
	e, err := New(cfg, keys, goldenClock)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]string, len(inputs))
	for i, in := range inputs {
		r, err := e.Apply(nil, in)
		want[i] = fmt.Sprintf("%s %s %s %v", r.Type, r.ID, r.JSON, err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := range 4 {
		wg.Go(func() {
			for k := range inputs {
				i := (k*31 + g*len(inputs)/4) % len(inputs)
				r, err := e.Apply(nil, inputs[i])
				if got := fmt.Sprintf("%s %s %s %v", r.Type, r.ID, r.JSON, err); got != want[i] {
					errs <- fmt.Sprintf("goroutine %d, input %d:\n got %.300s\nwant %.300s", g, i, got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
