package keycount

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestCounterMatchesAMap adds keys drawn from sets of a few to many more than the recent
// keys, runs of one key and scattered ones, and compares every count with a plain map's.
func TestCounterMatchesAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for _, distinct := range []int{1, 3, recentKeys, recentKeys + 1, 40, 1000} {
		t.Run(fmt.Sprint(distinct, " keys"), func(t *testing.T) {
			var c Counter[[2]string]
			want := map[[2]string]int64{}
			for i := 0; i < 20_000; {
				k := [2]string{fmt.Sprint("type", rng.IntN(distinct)), fmt.Sprint("outcome", rng.IntN(3))}
				run := 1 + rng.IntN(4) // the same key several times in a row, as records of one topic
				for j := 0; j < run; j++ {
					n := int64(1 + rng.IntN(3))
					c.Add(k, n)
					want[k] += n
					i++
				}
			}
			if c.Len() != len(want) {
				t.Errorf("%d keys, want %d", c.Len(), len(want))
			}
			seen := 0
			c.Each(func(k [2]string, n int64) {
				seen++
				if want[k] != n {
					t.Errorf("%v: %d, want %d", k, n, want[k])
				}
			})
			if seen != len(want) {
				t.Errorf("Each saw %d keys, want %d", seen, len(want))
			}
		})
	}
}

func TestZeroCounterIsEmpty(t *testing.T) {
	var c Counter[string]
	if c.Len() != 0 {
		t.Fatalf("zero Counter has %d keys", c.Len())
	}
	c.Each(func(string, int64) { t.Fatal("zero Counter has a key") })
}

// BenchmarkCounter counts the keys an omop record counts (type and outcome, then three
// references) against the map the Counter stands in front of.
func BenchmarkCounter(b *testing.B) {
	keys := [][3]string{
		{"Observation", "mapped", ""}, {"Patient", "literal", ""}, {"Encounter", "literal", ""}, {"Practitioner", "identifier", ""},
	}
	b.Run("counter", func(b *testing.B) {
		var c Counter[[3]string]
		for i := 0; b.Loop(); i++ {
			c.Add(keys[i%len(keys)], 1)
		}
	})
	b.Run("map", func(b *testing.B) {
		m := map[[3]string]int64{}
		for i := 0; b.Loop(); i++ {
			m[keys[i%len(keys)]]++
		}
	})
}
