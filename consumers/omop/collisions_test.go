package omop

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestCollisionsMatchAMap checks the collision table against a Go map of the first key
// seen for each id, over enough ids to make every shard grow many times, with ids drawn
// both from the whole 63-bit range and from a narrow one (neighbouring homes, long probe
// runs, the wrap at the table's end).
func TestCollisionsMatchAMap(t *testing.T) {
	for _, tc := range []struct {
		name   string
		checks int
		id     func(r *rand.Rand) int64
	}{
		{"uniform", 300_000, func(r *rand.Rand) int64 { return r.Int64() }},
		// Ids all homed at a shard's end or start: every probe run is long (fewer checks).
		{"top of the range", 20_000, func(r *rand.Rand) int64 { return 1<<63 - 1 - r.Int64N(1<<20) }},
		{"bottom of the range", 20_000, func(r *rand.Rand) int64 { return r.Int64N(1 << 20) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			c := newCollisions(1 << 30)
			first := map[int64]string{}
			var ids []int64
			for i := range tc.checks {
				var id int64
				if len(ids) > 0 && r.IntN(4) == 0 {
					id = ids[r.IntN(len(ids))] // an id seen before, with its key or another
				} else {
					id = tc.id(r)
				}
				key := "Condition/" + strconv.Itoa(r.IntN(3)) // the same key as before a third of the time
				if i%7 == 0 {
					key = "Observation/" + strconv.Itoa(i)
				}
				k, known := first[id]
				want := known && k != key
				if !known {
					first[id] = key
					ids = append(ids, id)
				}
				if got := c.check(id, key); got != want {
					t.Fatalf("check %d: id %d key %q: collision %v, want %v (first key %q)", i, id, key, got, want, k)
				}
			}
			if got := c.n.Load(); got != int64(len(first)) {
				t.Errorf("%d ids remembered, want %d", got, len(first))
			}
			var slots, used int
			for i := range c.shards {
				s := &c.shards[i]
				n := 0
				for _, e := range s.slots {
					if e.tag != 0 {
						n++
					}
				}
				if n != s.used {
					t.Errorf("shard %d: %d slots taken, used says %d", i, n, s.used)
				}
				if len(s.slots) > collisionMinSlots && (4*n > 3*len(s.slots) || 2*n < len(s.slots)) {
					t.Errorf("shard %d: %d of %d slots taken, outside the table's load range", i, n, len(s.slots))
				}
				slots += len(s.slots)
				used += n
			}
			t.Logf("%d ids in %d slots: %.1f bytes per id", used, slots, 16*float64(slots)/float64(used))
		})
	}
}

func BenchmarkCollisionsCheck(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	ids := make([]int64, 1<<20)
	for i := range ids {
		ids[i] = r.Int64()
	}
	b.ResetTimer()
	var c *collisions
	for i := range b.N {
		if i%len(ids) == 0 {
			c = newCollisions(1 << 30)
		}
		c.check(ids[i%len(ids)], "Condition/1")
	}
}
