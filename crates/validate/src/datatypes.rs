//! The FHIR R4 complex datatypes and the list of R4 resource types.
//!
//! The JP packages carry profiles of resources, not the base datatypes, so this table was
//! written by hand from the R4 specification (hl7.org/fhir/R4/datatypes.html, metadatatypes.html,
//! dosage.html, …): every element of each datatype with its cardinality and type(s). Every entry
//! implicitly starts with `id 0..1 string` and `extension 0..* Extension`; entries marked
//! `(backbone)` also get `modifierExtension 0..* Extension`. `*` as a type means "any type"
//! (Extension.value[x]): the type is read from the JSON name's suffix.

/// `Name[ (backbone)]: elem min..max type|type; …` — one datatype per line.
pub(crate) const TABLE: &str = "
Element:
BackboneElement (backbone):
Extension: url 1..1 uri; value[x] 0..1 *
Coding: system 0..1 uri; version 0..1 string; code 0..1 code; display 0..1 string; userSelected 0..1 boolean
CodeableConcept: coding 0..* Coding; text 0..1 string
Identifier: use 0..1 code; type 0..1 CodeableConcept; system 0..1 uri; value 0..1 string; period 0..1 Period; assigner 0..1 Reference
HumanName: use 0..1 code; text 0..1 string; family 0..1 string; given 0..* string; prefix 0..* string; suffix 0..* string; period 0..1 Period
Reference: reference 0..1 string; type 0..1 uri; identifier 0..1 Identifier; display 0..1 string
Period: start 0..1 dateTime; end 0..1 dateTime
Quantity: value 0..1 decimal; comparator 0..1 code; unit 0..1 string; system 0..1 uri; code 0..1 code
Money: value 0..1 decimal; currency 0..1 code
Range: low 0..1 Quantity; high 0..1 Quantity
Ratio: numerator 0..1 Quantity; denominator 0..1 Quantity
SampledData: origin 1..1 Quantity; period 1..1 decimal; factor 0..1 decimal; lowerLimit 0..1 decimal; upperLimit 0..1 decimal; dimensions 1..1 positiveInt; data 0..1 string
Attachment: contentType 0..1 code; language 0..1 code; data 0..1 base64Binary; url 0..1 url; size 0..1 unsignedInt; hash 0..1 base64Binary; title 0..1 string; creation 0..1 dateTime
Annotation: author[x] 0..1 Reference|string; time 0..1 dateTime; text 1..1 markdown
ContactPoint: system 0..1 code; value 0..1 string; use 0..1 code; rank 0..1 positiveInt; period 0..1 Period
Address: use 0..1 code; type 0..1 code; text 0..1 string; line 0..* string; city 0..1 string; district 0..1 string; state 0..1 string; postalCode 0..1 string; country 0..1 string; period 0..1 Period
Meta: versionId 0..1 id; lastUpdated 0..1 instant; source 0..1 uri; profile 0..* canonical; security 0..* Coding; tag 0..* Coding
Narrative: status 1..1 code; div 1..1 xhtml
Signature: type 1..* Coding; when 1..1 instant; who 1..1 Reference; onBehalfOf 0..1 Reference; targetFormat 0..1 code; sigFormat 0..1 code; data 0..1 base64Binary
Timing (backbone): event 0..* dateTime; repeat 0..1 Timing.repeat; code 0..1 CodeableConcept
Timing.repeat: bounds[x] 0..1 Duration|Range|Period; count 0..1 positiveInt; countMax 0..1 positiveInt; duration 0..1 decimal; durationMax 0..1 decimal; durationUnit 0..1 code; frequency 0..1 positiveInt; frequencyMax 0..1 positiveInt; period 0..1 decimal; periodMax 0..1 decimal; periodUnit 0..1 code; dayOfWeek 0..* code; timeOfDay 0..* time; when 0..* code; offset 0..1 unsignedInt
Dosage (backbone): sequence 0..1 integer; text 0..1 string; additionalInstruction 0..* CodeableConcept; patientInstruction 0..1 string; timing 0..1 Timing; asNeeded[x] 0..1 boolean|CodeableConcept; site 0..1 CodeableConcept; route 0..1 CodeableConcept; method 0..1 CodeableConcept; doseAndRate 0..* Dosage.doseAndRate; maxDosePerPeriod 0..1 Ratio; maxDosePerAdministration 0..1 Quantity; maxDosePerLifetime 0..1 Quantity
Dosage.doseAndRate: type 0..1 CodeableConcept; dose[x] 0..1 Range|Quantity; rate[x] 0..1 Ratio|Range|Quantity
ContactDetail: name 0..1 string; telecom 0..* ContactPoint
UsageContext: code 1..1 Coding; value[x] 1..1 CodeableConcept|Quantity|Range|Reference
RelatedArtifact: type 1..1 code; label 0..1 string; display 0..1 string; citation 0..1 markdown; url 0..1 url; document 0..1 Attachment; resource 0..1 canonical
Expression: description 0..1 string; name 0..1 id; language 1..1 code; expression 0..1 string; reference 0..1 uri
Contributor: type 1..1 code; name 1..1 string; contact 0..* ContactDetail
";

/// Quantity profiles that share Quantity's elements.
pub(crate) const QUANTITY_ALIASES: &[&str] =
    &["Age", "Count", "Distance", "Duration", "SimpleQuantity", "MoneyQuantity"];

/// Complex datatypes that exist in R4 but are not described in [`TABLE`]; their content is
/// accepted without element checks.
pub(crate) const OPAQUE_TYPES: &[&str] = &[
    "DataRequirement",
    "ParameterDefinition",
    "TriggerDefinition",
    "MarketingStatus",
    "Population",
    "ProdCharacteristic",
    "ProductShelfLife",
    "SubstanceAmount",
    "ElementDefinition",
];

/// The elements every resource has (Resource + DomainResource), used for resource types that no
/// package profiles: known elements are checked, others are accepted.
pub(crate) const DOMAIN_RESOURCE: &str = "id 0..1 id; meta 0..1 Meta; implicitRules 0..1 uri; language 0..1 code; text 0..1 Narrative; contained 0..* Resource; extension 0..* Extension; modifierExtension 0..* Extension";

/// The FHIR R4 (4.0.1) resource types.
pub(crate) const RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// Whether `name` is an R4 resource type.
pub(crate) fn is_resource_type(name: &str) -> bool {
    RESOURCE_TYPES.binary_search(&name).is_ok()
}

/// The JP Core (or JP-CLINS base) profile used for a resource that names no known profile.
pub(crate) fn jp_core_base(resource_type: &str) -> Option<&'static str> {
    Some(match resource_type {
        "Patient" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient",
        "Practitioner" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Practitioner",
        "PractitionerRole" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_PractitionerRole",
        "Organization" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Organization",
        "Location" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Location",
        "Coverage" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Coverage",
        "Encounter" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Encounter",
        "Condition" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Condition",
        "AllergyIntolerance" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_AllergyIntolerance",
        "Observation" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Observation_Common",
        "DiagnosticReport" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_DiagnosticReport_Common",
        "Medication" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Medication",
        "MedicationRequest" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_MedicationRequest",
        "MedicationDispense" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_MedicationDispense",
        "MedicationAdministration" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_MedicationAdministration",
        "Immunization" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Immunization",
        "Procedure" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Procedure",
        "FamilyMemberHistory" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_FamilyMemberHistory",
        "Specimen" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Specimen",
        "ServiceRequest" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_ServiceRequest",
        "Binary" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Binary",
        "CarePlan" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_CarePlan",
        "Consent" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Consent",
        "Device" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Device",
        "DeviceUseStatement" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_DeviceUseStatement",
        "DocumentReference" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_DocumentReference",
        "RelatedPerson" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_RelatedPerson",
        "ResearchStudy" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_ResearchStudy",
        "ResearchSubject" => "http://jpfhir.jp/fhir/core/StructureDefinition/JP_ResearchSubject",
        "Bundle" => "http://jpfhir.jp/fhir/StructureDefinition/JP_Bundle",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn resource_types_are_sorted_for_binary_search() {
        let mut sorted = super::RESOURCE_TYPES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, super::RESOURCE_TYPES);
        assert!(super::is_resource_type("Observation"));
        assert!(!super::is_resource_type("Observaton"));
    }
}
