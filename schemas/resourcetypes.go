package schemas

// BulkResourceTypes are the FHIR R4 resource types for which topics are created up front:
// those a US Core / Synthea bulk export carries and those the OMOP mapper reads. Other
// types still flow: the fetcher creates their topics on first sight, and consumers
// subscribe by pattern.
var BulkResourceTypes = []string{
	"AllergyIntolerance", "CarePlan", "CareTeam", "Claim", "Condition", "Device",
	"DeviceUseStatement", "DiagnosticReport", "DocumentReference", "Encounter",
	"ExplanationOfBenefit", "Goal", "ImagingStudy", "Immunization", "Location", "Medication",
	"MedicationAdministration", "MedicationRequest", "MedicationStatement", "Observation",
	"Organization", "Patient", "Practitioner", "PractitionerRole", "Procedure", "Provenance",
	"SupplyDelivery",
}
