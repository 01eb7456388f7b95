//go:build !race

package deid

// raceDetector: see race_on_test.go.
const raceDetector = false
