// Package deid is the de-identification stage: each resource of the unique layer made
// fit for readers without a right to PHI by a configuration in the format of
// Microsoft's FHIR anonymizer (fhirPathRules: a FHIRPath path and a method per rule,
// and parameters), with keyed pseudonyms that keep references resolving and per-patient
// date shifts that keep intervals. docs/deid.md documents the configuration, the
// presets and the residual risks.
//
// An Engine applies a configuration to one resource at a time, by one of two paths that
// give the same result:
//
//   - The tree path reads the resource into a jsontree tree, types every value from the
//     FHIR R4 element table (schema.go), works out which rule decides each value (the
//     first whose path reaches it or a value above it: pathstate.go), applies the
//     methods (methods.go) and writes the result (document.go). Paths the path states
//     do not follow are evaluated rule by rule with the FHIRPath subset (fhirpath.go,
//     eval.go): that procedure is the specification the rest is held to.
//   - The one-pass path (stream.go) does the same in a single pass over the bytes for
//     the common resource (compact JSON of plain ASCII, plain paths), copying what no
//     rule changes. It declines anything else, which then takes the tree path.
//
// Processor and Definition make the Engine a stage on the stage runtime.
package deid
