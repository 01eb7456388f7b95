package synth

import "time"

// Code system URIs, as FHIR R4 and US Core name them.
const (
	sysLOINC       = "http://loinc.org"
	sysSNOMED      = "http://snomed.info/sct"
	sysRxNorm      = "http://www.nlm.nih.gov/research/umls/rxnorm"
	sysCVX         = "http://hl7.org/fhir/sid/cvx"
	sysUCUM        = "http://unitsofmeasure.org"
	sysCDCRace     = "urn:oid:2.16.840.1.113883.6.238"
	sysActCode     = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	sysObsCategory = "http://terminology.hl7.org/CodeSystem/observation-category"
	sysNPI         = "http://hl7.org/fhir/sid/us-npi"
	sysSSN         = "http://hl7.org/fhir/sid/us-ssn"
	sysV20203      = "http://terminology.hl7.org/CodeSystem/v2-0203"
	// sysMRN is the medical record number namespace of the simulated EHR; .example is a
	// reserved TLD, so the identifiers can never collide with a real system's.
	sysMRN = "https://ehr.fhirstream.example/mrn"
)

// concept is one coding: a code in a code system with its display text.
type concept struct{ system, code, display string }

func (e *enc) coding(c *concept) {
	e.obj()
	e.field("system", c.system)
	e.field("code", c.code)
	if c.display != "" {
		e.field("display", c.display)
	}
	e.endObj()
}

// codeable writes a CodeableConcept with one coding and the display as its text.
func (e *enc) codeable(c *concept) {
	e.obj()
	e.key("coding")
	e.arr()
	e.coding(c)
	e.endArr()
	if c.display != "" {
		e.field("text", c.display)
	}
	e.endObj()
}

func (e *enc) fieldCodeable(k string, c *concept) { e.key(k); e.codeable(c) }

// fieldCodeableList writes an array holding one CodeableConcept.
func (e *enc) fieldCodeableList(k string, c *concept) {
	e.key(k)
	e.arr()
	e.codeable(c)
	e.endArr()
}

// fieldCodingOnly writes a CodeableConcept with a single coding and no text, the shape
// FHIR uses for status-like fields (clinicalStatus, verificationStatus, category).
func (e *enc) fieldCodingOnly(k string, c *concept) {
	e.key(k)
	e.obj()
	e.key("coding")
	e.arr()
	e.coding(c)
	e.endArr()
	e.endObj()
}

// quantity writes a UCUM Quantity; the unit shown is the UCUM code itself, as Synthea does.
func (e *enc) quantity(k string, v float64, prec int, unit string) {
	e.key(k)
	e.obj()
	e.fieldNum("value", v, prec)
	e.field("unit", unit)
	e.field("system", sysUCUM)
	e.field("code", unit)
	e.endObj()
}

// header writes the opening of every resource: resourceType, id and meta.
func (e *enc) header(resourceType string, id *uuid, version int, lastUpdated time.Time) {
	e.reset()
	e.obj()
	e.field("resourceType", resourceType)
	e.fieldID("id", id)
	e.key("meta")
	e.obj()
	e.key("versionId")
	e.b = append(e.b, '"', byte('0'+version), '"') // versions stay single-digit
	e.comma = true
	e.fieldTime("lastUpdated", lastUpdated.UTC())
	e.endObj()
}

func (e *enc) period(k string, start, end time.Time) {
	e.key(k)
	e.obj()
	e.fieldTime("start", start)
	if !end.IsZero() {
		e.fieldTime("end", end)
	}
	e.endObj()
}
