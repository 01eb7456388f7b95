// Package keycount counts by key on hot paths where most counts fall on a few keys: a
// stage's per-record counters (a decision by reason, a reference by outcome), counted
// for every record but drawn from a handful of label values. The keys counted last are
// compared before the map is hashed, which for keys of several strings costs a fraction
// of hashing them.
package keycount

// recentKeys is how many of the last distinct keys are compared before the map: enough
// for the keys one record counts (omop: its type and outcome, a few reference kinds, a
// table or two).
const recentKeys = 8

// Counter counts by key. Its zero value is empty and ready; it is not safe for
// concurrent use.
type Counter[K comparable] struct {
	counts map[K]*int64
	recent [recentKeys]recent[K]
	used   int // entries of recent in use
	next   int // the entry a new key takes once all are in use
}

type recent[K comparable] struct {
	key K
	n   *int64
}

// Add adds n to key's count.
func (c *Counter[K]) Add(key K, n int64) {
	for i := range c.used {
		if c.recent[i].key == key {
			*c.recent[i].n += n
			return
		}
	}
	if c.counts == nil {
		c.counts = make(map[K]*int64)
	}
	p := c.counts[key]
	if p == nil {
		p = new(int64)
		c.counts[key] = p
	}
	*p += n
	if c.used < recentKeys {
		c.recent[c.used] = recent[K]{key, p}
		c.used++
		return
	}
	c.recent[c.next] = recent[K]{key, p}
	c.next = (c.next + 1) % recentKeys
}

// Len is the number of keys counted.
func (c *Counter[K]) Len() int { return len(c.counts) }

// Each calls f with every key and its count, in no particular order.
func (c *Counter[K]) Each(f func(key K, n int64)) {
	for k, p := range c.counts {
		f(k, *p)
	}
}
