// Package consumers holds fhirstream's processing stages, one package each (validate,
// dedupe, omop, sink), the stage API they implement (consumers/stage) and the runtime
// that runs them as Kafka consumer groups (consumers/runtime).
//
// A stage package holds logic only: given a record, the records it yields or the reason
// it fails. Consuming, producing, transactions, dead-lettering, state restore, retries and
// metrics live once, in the runtime.
package consumers
