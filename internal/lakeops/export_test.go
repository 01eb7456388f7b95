package lakeops

// WithBeforeCommit sets the test hook that runs between a compaction's
// rewrite and its commit.
func WithBeforeCommit(o CompactOptions, f func(attempt int)) CompactOptions {
	o.beforeCommit = f
	return o
}
