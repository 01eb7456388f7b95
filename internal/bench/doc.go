// Package bench measures the whole pipeline end to end, as `fhirstream bench` runs it:
// it generates patients, serves them with the EHR simulator, fetches the export into
// Kafka and runs every stage until all have drained, on a fresh topic prefix and fresh
// consumer groups, then reports resources per second end to end, each stage's records,
// active time and rate, CPU and memory.
//
// Two modes. In-process (the default) runs the fetcher and every stage in this process
// (internal/pipeline), with a CPU profile split per stage by pprof labels. Processes
// (Options.Processes) runs the fetcher and every stage as its own OS process of the
// fhirstream binary (`fhirstream fetch`, `fhirstream consume <stage>`), as a deployment
// runs them, and reports each process's CPU and peak resident memory; progress comes
// from each process's /metrics.
//
// A stage is active from the moment its input first became readable (its upstream's
// first committed output; the kickoff for fetch) until its last input was committed.
// The report checks that the counts add up: every generated resource fetched, each
// stage reading what its upstream wrote.
package bench
