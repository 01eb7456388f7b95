package validate

// Kind is the FHIR data type an element is checked as.
type Kind uint8

// Kinds of elements the rules check. Complex kinds check only the parts the pipeline
// relies on (a Coding's system and code, a Reference's form, a Period's bounds).
const (
	Any Kind = iota // present, of any type
	String
	Boolean
	Code
	URI
	Date
	DateTime
	Instant
	Decimal
	Coding
	CodeableConcept
	Reference
	Period
	Quantity
)

var kindNames = [...]string{Any: "any", String: "string", Boolean: "boolean", Code: "code", URI: "uri",
	Date: "date", DateTime: "dateTime", Instant: "instant", Decimal: "decimal", Coding: "Coding",
	CodeableConcept: "CodeableConcept", Reference: "Reference", Period: "Period", Quantity: "Quantity"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Element is one rule of a resource type's table.
type Element struct {
	// Path is dotted from the resource root, e.g. "code" or "component.code"; arrays
	// on the way are walked element by element. A final "name[x]" is a choice
	// element: one of Choices' suffixes (effectiveDateTime, effectivePeriod, …).
	Path string
	// Kind is the data type of the element (unused for choices).
	Kind Kind
	// Choices maps the allowed type suffixes of a choice element to their kinds.
	Choices map[string]Kind
	// Required: the element must be present in every instance of its parent.
	Required bool
	// Values, when set, are the allowed codes (a required binding FHIR states without
	// needing a terminology server, such as Observation.status).
	Values []string
}

// Common value sets and choices.
var (
	eventStatus = []string{"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"}
	obsStatus   = []string{"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
	reqIntent   = []string{"proposal", "plan", "directive", "order", "original-order", "reflex-order", "filler-order", "instance-order", "option"}
	whenChoice  = map[string]Kind{"DateTime": DateTime, "Period": Period, "Instant": Instant, "String": String, "Age": Quantity, "Range": Any, "Timing": Any}
	medChoice   = map[string]Kind{"CodeableConcept": CodeableConcept, "Reference": Reference}
	valueChoice = map[string]Kind{"Quantity": Quantity, "CodeableConcept": CodeableConcept, "String": String,
		"Boolean": Boolean, "Integer": Any, "Range": Any, "Ratio": Any, "SampledData": Any, "Time": Any,
		"DateTime": DateTime, "Period": Period}
)

// Rules are the per-type tables: the elements the OMOP mapper and later stages rely on,
// with FHIR R4 cardinalities and required bindings. Add a type or an element here; no
// code changes are needed. Types without a table get the generic checks only.
var Rules = map[string][]Element{
	"Patient": {
		{Path: "gender", Kind: Code, Values: []string{"male", "female", "other", "unknown"}},
		{Path: "birthDate", Kind: Date},
		{Path: "deceased[x]", Choices: map[string]Kind{"Boolean": Boolean, "DateTime": DateTime}},
		{Path: "identifier.system", Kind: URI},
		{Path: "managingOrganization", Kind: Reference},
	},
	"Encounter": {
		{Path: "status", Kind: Code, Required: true, Values: []string{"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown"}},
		{Path: "class", Kind: Coding, Required: true},
		{Path: "type", Kind: CodeableConcept},
		{Path: "subject", Kind: Reference},
		{Path: "period", Kind: Period},
		{Path: "participant.individual", Kind: Reference},
		{Path: "serviceProvider", Kind: Reference},
		{Path: "location.location", Kind: Reference, Required: true},
	},
	"Condition": {
		{Path: "subject", Kind: Reference, Required: true},
		{Path: "code", Kind: CodeableConcept},
		{Path: "clinicalStatus", Kind: CodeableConcept},
		{Path: "verificationStatus", Kind: CodeableConcept},
		{Path: "encounter", Kind: Reference},
		{Path: "onset[x]", Choices: whenChoice},
		{Path: "abatement[x]", Choices: whenChoice},
		{Path: "recordedDate", Kind: DateTime},
	},
	"Observation": {
		{Path: "status", Kind: Code, Required: true, Values: obsStatus},
		{Path: "code", Kind: CodeableConcept, Required: true},
		{Path: "category", Kind: CodeableConcept},
		{Path: "subject", Kind: Reference},
		{Path: "encounter", Kind: Reference},
		{Path: "effective[x]", Choices: whenChoice},
		{Path: "issued", Kind: Instant},
		{Path: "value[x]", Choices: valueChoice},
		{Path: "component.code", Kind: CodeableConcept, Required: true},
		{Path: "component.value[x]", Choices: valueChoice},
	},
	"MedicationRequest": {
		{Path: "status", Kind: Code, Required: true, Values: []string{"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"}},
		{Path: "intent", Kind: Code, Required: true, Values: reqIntent},
		{Path: "medication[x]", Choices: medChoice, Required: true},
		{Path: "subject", Kind: Reference, Required: true},
		{Path: "encounter", Kind: Reference},
		{Path: "authoredOn", Kind: DateTime},
		{Path: "requester", Kind: Reference},
	},
	"MedicationAdministration": {
		{Path: "status", Kind: Code, Required: true},
		{Path: "medication[x]", Choices: medChoice, Required: true},
		{Path: "subject", Kind: Reference, Required: true},
		{Path: "effective[x]", Choices: whenChoice, Required: true},
		{Path: "context", Kind: Reference},
	},
	"MedicationStatement": {
		{Path: "status", Kind: Code, Required: true},
		{Path: "medication[x]", Choices: medChoice, Required: true},
		{Path: "subject", Kind: Reference, Required: true},
		{Path: "effective[x]", Choices: whenChoice},
	},
	"Medication": {
		{Path: "code", Kind: CodeableConcept},
	},
	"Procedure": {
		{Path: "status", Kind: Code, Required: true, Values: eventStatus},
		{Path: "subject", Kind: Reference, Required: true},
		{Path: "code", Kind: CodeableConcept},
		{Path: "encounter", Kind: Reference},
		{Path: "performed[x]", Choices: whenChoice},
	},
	"Immunization": {
		{Path: "status", Kind: Code, Required: true, Values: []string{"completed", "entered-in-error", "not-done"}},
		{Path: "vaccineCode", Kind: CodeableConcept, Required: true},
		{Path: "patient", Kind: Reference, Required: true},
		{Path: "occurrence[x]", Choices: map[string]Kind{"DateTime": DateTime, "String": String}, Required: true},
		{Path: "encounter", Kind: Reference},
		{Path: "primarySource", Kind: Boolean},
	},
	"AllergyIntolerance": {
		{Path: "patient", Kind: Reference, Required: true},
		{Path: "clinicalStatus", Kind: CodeableConcept},
		{Path: "verificationStatus", Kind: CodeableConcept},
		{Path: "code", Kind: CodeableConcept},
		{Path: "type", Kind: Code, Values: []string{"allergy", "intolerance"}},
		{Path: "category", Kind: Code, Values: []string{"food", "medication", "environment", "biologic"}},
		{Path: "criticality", Kind: Code, Values: []string{"low", "high", "unable-to-assess"}},
		{Path: "recordedDate", Kind: DateTime},
	},
	"DiagnosticReport": {
		{Path: "status", Kind: Code, Required: true, Values: []string{"registered", "partial", "preliminary", "final", "amended", "corrected", "appended", "cancelled", "entered-in-error", "unknown"}},
		{Path: "code", Kind: CodeableConcept, Required: true},
		{Path: "subject", Kind: Reference},
		{Path: "encounter", Kind: Reference},
		{Path: "effective[x]", Choices: whenChoice},
		{Path: "issued", Kind: Instant},
		{Path: "result", Kind: Reference},
	},
	"Device": {
		{Path: "patient", Kind: Reference},
		{Path: "type", Kind: CodeableConcept},
	},
	"DeviceUseStatement": {
		{Path: "status", Kind: Code, Required: true},
		{Path: "subject", Kind: Reference, Required: true},
		{Path: "device", Kind: Reference, Required: true},
	},
	"CarePlan": {
		{Path: "status", Kind: Code, Required: true},
		{Path: "intent", Kind: Code, Required: true},
		{Path: "subject", Kind: Reference, Required: true},
		{Path: "period", Kind: Period},
	},
	"Goal": {
		{Path: "lifecycleStatus", Kind: Code, Required: true},
		{Path: "description", Kind: CodeableConcept, Required: true},
		{Path: "subject", Kind: Reference, Required: true},
	},
	"Claim": {
		{Path: "status", Kind: Code, Required: true},
		{Path: "type", Kind: CodeableConcept, Required: true},
		{Path: "use", Kind: Code, Required: true},
		{Path: "patient", Kind: Reference, Required: true},
		{Path: "created", Kind: DateTime, Required: true},
		{Path: "provider", Kind: Reference, Required: true},
		{Path: "priority", Kind: CodeableConcept, Required: true},
	},
	"ExplanationOfBenefit": {
		{Path: "status", Kind: Code, Required: true},
		{Path: "type", Kind: CodeableConcept, Required: true},
		{Path: "use", Kind: Code, Required: true},
		{Path: "patient", Kind: Reference, Required: true},
		{Path: "created", Kind: DateTime, Required: true},
		{Path: "outcome", Kind: Code, Required: true},
	},
	"DocumentReference": {
		{Path: "status", Kind: Code, Required: true, Values: []string{"current", "superseded", "entered-in-error"}},
		{Path: "content", Kind: Any, Required: true},
		{Path: "content.attachment", Kind: Any, Required: true},
		{Path: "subject", Kind: Reference},
		{Path: "date", Kind: Instant},
	},
	"ImagingStudy": {
		{Path: "status", Kind: Code, Required: true},
		{Path: "subject", Kind: Reference, Required: true},
		{Path: "started", Kind: DateTime},
	},
	"Provenance": {
		{Path: "target", Kind: Reference, Required: true},
		{Path: "recorded", Kind: Instant, Required: true},
		{Path: "agent", Kind: Any, Required: true},
		{Path: "agent.who", Kind: Reference, Required: true},
	},
	"PractitionerRole": {
		{Path: "practitioner", Kind: Reference},
		{Path: "organization", Kind: Reference},
	},
	"Practitioner": {
		{Path: "identifier.system", Kind: URI},
	},
	"Organization": {
		{Path: "identifier.system", Kind: URI},
	},
	"Location": {
		{Path: "managingOrganization", Kind: Reference},
	},
	"CareTeam": {
		{Path: "subject", Kind: Reference},
		{Path: "encounter", Kind: Reference},
	},
	"SupplyDelivery": {
		{Path: "patient", Kind: Reference},
	},
}
