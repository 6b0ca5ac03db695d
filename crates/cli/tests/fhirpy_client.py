"""An independent FHIR client (fhirpy) creating, searching and reading through Musubi.

Run by tests/cli.rs with: python fhirpy_client.py BASE_URL TOKEN FACILITY
Exits non-zero (with the reason) if anything differs from what a FHIR R4 server must do.
"""
import asyncio
import sys

from fhirpy import AsyncFHIRClient, SyncFHIRClient


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def main(base, token, facility):
    client = SyncFHIRClient(base, authorization=f"Bearer {token}", extra_headers={"Accept": "application/fhir+json"})
    local_system = f"urn:oid:1.2.392.100495.20.3.51.1{facility}"
    patient = client.resource(
        "Patient",
        identifier=[{"system": local_system, "value": "PY-0001"}],
        name=[
            {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "IDE"}], "text": "結 一郎", "family": "結", "given": ["一郎"]},
            {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}], "text": "ムスビ イチロウ", "family": "ムスビ", "given": ["イチロウ"]},
        ],
        gender="male",
        birthDate="1970-01-01",
    )
    patient.save()
    check(patient.id, "the server assigns an id on create")
    check(patient.meta["versionId"] == "1", "versionId 1 after create")

    for i, value in enumerate([6.1, 6.4, 7.0]):
        obs = client.resource(
            "Observation",
            status="final",
            category=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            code={"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationLabResultCode_CS", "code": "3D046000001920402", "display": "HbA1c"}]},
            subject=patient.to_reference(),
            effectiveDateTime=f"2024-0{i + 1}-15",
            valueQuantity={"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
        )
        obs.save()

    found = client.resources("Observation").search(patient=patient.id).sort("-date").fetch_all()
    check(len(found) == 3, f"3 observations found by patient, got {len(found)}")
    check([o["valueQuantity"]["value"] for o in found] == [7.0, 6.4, 6.1], "sorted newest first")
    check(client.resources("Observation").search(patient=patient.id).count() == 3, "count")

    page = client.resources("Observation").search(patient=patient.id).limit(1).fetch()
    check(len(page) == 1, "_count limits the page")

    by_name = client.resources("Patient").search(name="むすび").fetch_all()
    check(any(p.id == patient.id for p in by_name), "kana search in hiragana finds the katakana name")

    again = client.reference("Patient", patient.id).to_resource()
    check(again["name"][0]["text"] == "結 一郎", "read back the kanji name")
    again["gender"] = "other"
    again.save()
    check(again.meta["versionId"] == "2", "update gives version 2")

    # The async client, as EMR integrations use it.
    async def async_part():
        ac = AsyncFHIRClient(base, authorization=f"Bearer {token}")
        ps = await ac.resources("Patient").search(identifier=f"{local_system}|PY-0001").fetch_all()
        check(len(ps) == 1 and ps[0].id == patient.id, "search by identifier system|value")
        missing = await ac.resources("Patient").search(_id="no-such-patient").fetch_all()
        check(missing == [], "no result for a missing id")

    asyncio.run(async_part())
    print("fhirpy client: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
