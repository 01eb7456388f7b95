//go:build race

package deid

// raceDetector is true when the tests run under the race detector, which makes
// single-goroutine comparisons over large inputs about fifteen times slower without
// anything for it to find in them.
const raceDetector = true
