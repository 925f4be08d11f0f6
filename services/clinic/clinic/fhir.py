"""A patient's whole record as a FHIR R4 Bundle (``type: collection``), for the export route.

One pure function, ``patient_bundle``: the rows ``clinic.crud`` returns in, a JSON-ready dict
out, no I/O. What goes where:

- the patient: a ``Patient`` (name as ``text``, with a best-effort ``given``/``family`` split;
  ``birthDate``; ``telecom``: the phone, and the email when there is one);
- each consultation: an ``Encounter`` (finished, ambulatory; ``period.start`` its date; the
  diagnosis as ``reasonCode[0].text``; its cabinet as ``location``), and when the treatment is
  not empty a ``Procedure`` (completed; ``code.text`` the treatment; ``performedDateTime`` the
  date) pointing at that Encounter;
- each cabinet those consultations took place in, once: a ``Location`` (name, address as
  ``text``, phone). Cabinets no consultation of the patient names are left out.

Identity: every resource has a stable ``id`` (``patient-1``, ``encounter-7``, ``procedure-7``,
``location-3``). An entry's ``fullUrl`` must be an absolute URI, and DentiaPro has no FHIR
server whose RESTful URLs (``https://.../Patient/patient-1``) it could use, so each is a
``urn:uuid:`` derived from the tenant and the resource's id (the same record gets the same
fullUrl in every export). A relative reference (``Patient/patient-1``) only resolves inside a
bundle whose fullUrls are RESTful ones (FHIR R4, "Resolving references in Bundles"):
references therefore carry the target's ``urn:uuid:`` fullUrl.
"""

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any, Protocol
from uuid import UUID, uuid4, uuid5

from common.db import as_utc

Json = dict[str, Any]

# Names every fullUrl this service exports: never change it, or every record changes identity.
FULL_URL_NAMESPACE = UUID("12394488-6929-416e-83fc-1b3809c45ae3")

ENCOUNTER_CLASS_AMBULATORY: Json = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
    "code": "AMB",
    "display": "ambulatory",
}

# A FHIR string is ``^[ \r\n\t\S]+$`` (the R4 JSON schema, an ECMAScript pattern), so the only
# whitespace it may hold is space, tab, CR and LF. Stored text may carry other Unicode spaces
# and separators (a no-break space from a word processor, U+2028 from a phone keyboard) or
# control characters (which strings SHOULD NOT contain): line separators become a line feed,
# everything else a space, so the meaning of the text is kept and every string validates.
_LINE_BREAKS = "\x0b\x0c\x85\u2028\u2029"
_SPACES = (
    "".join(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r" + _LINE_BREAKS)
    + "\x7f\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u202f\u205f\u3000\ufeff"
)
_FHIR_STRING = str.maketrans({**dict.fromkeys(_LINE_BREAKS, "\n"), **dict.fromkeys(_SPACES, " ")})


class PatientRecord(Protocol):
    """A patient as ``clinic.crud`` returns it (the fields of ``PatientPublic``)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def birthdate(self) -> date: ...
    @property
    def contact_number(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def updated_at(self) -> datetime: ...


class ConsultationRecord(Protocol):
    """A consultation as ``clinic.crud`` returns it (the fields of ``ConsultationPublic``)."""

    @property
    def id(self) -> int: ...
    @property
    def patient(self) -> int: ...
    @property
    def cabinet(self) -> int: ...
    @property
    def date(self) -> datetime: ...
    @property
    def diagnosis(self) -> str: ...
    @property
    def treatment(self) -> str: ...
    @property
    def updated_at(self) -> datetime: ...


class CabinetRecord(Protocol):
    """A cabinet as ``clinic.crud`` returns it (the fields of ``CabinetPublic``)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def contact_number(self) -> str: ...
    @property
    def updated_at(self) -> datetime: ...


def patient_bundle(
    patient: PatientRecord,
    consultations: Iterable[ConsultationRecord],
    cabinets: Iterable[CabinetRecord],
    *,
    tenant: str,
    now: datetime | None = None,
) -> Json:
    """The patient's record as a FHIR R4 ``collection`` Bundle.

    ``consultations`` are all of the patient's consultations (any order; the bundle lists them
    by date); ``cabinets`` must include every cabinet they name and may include others, which
    are left out. ``tenant`` scopes the fullUrls (patient 1 of two practices are two
    people); ``now`` is the bundle's timestamp (default: the current time). Naive date-times
    are taken as UTC. ``ValueError`` if a consultation is another patient's, names a cabinet
    not given, or appears twice: a caller's mistake, never to be exported as it is.
    """
    by_id = {cabinet.id: cabinet for cabinet in cabinets}
    visits = sorted(
        consultations, key=lambda consultation: (as_utc(consultation.date), consultation.id)
    )
    _check(patient, visits, by_id)

    def full_url(resource_type: str, resource_id: str) -> str:
        return f"urn:uuid:{uuid5(FULL_URL_NAMESPACE, f'{tenant}/{resource_type}/{resource_id}')}"

    def entry(resource: Json) -> Json:
        return {"fullUrl": full_url(resource["resourceType"], resource["id"]), "resource": resource}

    def reference(resource_type: str, resource_id: str) -> Json:
        return {"reference": full_url(resource_type, resource_id)}

    patient_id = f"patient-{patient.id}"
    entries = [entry(_patient(patient, patient_id))]
    used_cabinets = sorted({visit.cabinet for visit in visits})
    entries += [entry(_location(by_id[cabinet_id])) for cabinet_id in used_cabinets]
    for visit in visits:
        encounter = _encounter(
            visit,
            subject=reference("Patient", patient_id),
            location=reference("Location", f"location-{visit.cabinet}"),
        )
        entries.append(entry(encounter))
        if visit.treatment:
            procedure = _procedure(
                visit,
                subject=reference("Patient", patient_id),
                encounter=reference("Encounter", encounter["id"]),
            )
            entries.append(entry(procedure))

    bundle_id = uuid4()
    return {
        "resourceType": "Bundle",
        "id": str(bundle_id),
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{bundle_id}"},
        "type": "collection",
        "timestamp": _instant(now or datetime.now(UTC)),
        "entry": entries,
    }


def _check(
    patient: PatientRecord,
    visits: list[ConsultationRecord],
    cabinets: dict[int, CabinetRecord],
) -> None:
    seen: set[int] = set()
    for visit in visits:
        if visit.patient != patient.id:
            raise ValueError(
                f"consultation {visit.id} is patient {visit.patient}'s, not patient {patient.id}'s"
            )
        if visit.cabinet not in cabinets:
            raise ValueError(f"consultation {visit.id} names cabinet {visit.cabinet}, not given")
        if visit.id in seen:
            raise ValueError(f"consultation {visit.id} is given twice")
        seen.add(visit.id)


def _patient(patient: PatientRecord, resource_id: str) -> Json:
    telecom = [{"system": "phone", "value": _string(patient.contact_number)}]
    if patient.email:
        telecom.append({"system": "email", "value": _string(patient.email)})
    return {
        "resourceType": "Patient",
        "id": resource_id,
        "meta": _meta(patient.updated_at),
        "name": [_human_name(_string(patient.name))],
        "telecom": telecom,
        "birthDate": patient.birthdate.isoformat(),
    }


def _human_name(text: str) -> Json:
    # Best effort: the last word as the family name, the words before it as given names. One
    # word alone could be either, so it stays in ``text`` only, which always holds the name as
    # stored.
    name: Json = {"text": text}
    words = text.split()
    if len(words) > 1:
        name["family"] = words[-1]
        name["given"] = words[:-1]
    return name


def _location(cabinet: CabinetRecord) -> Json:
    return {
        "resourceType": "Location",
        "id": f"location-{cabinet.id}",
        "meta": _meta(cabinet.updated_at),
        "name": _string(cabinet.name),
        "telecom": [{"system": "phone", "value": _string(cabinet.contact_number)}],
        "address": {"text": _string(cabinet.address)},
    }


def _encounter(visit: ConsultationRecord, *, subject: Json, location: Json) -> Json:
    return {
        "resourceType": "Encounter",
        "id": f"encounter-{visit.id}",
        "meta": _meta(visit.updated_at),
        "status": "finished",
        "class": ENCOUNTER_CLASS_AMBULATORY,
        "subject": subject,
        "period": {"start": _instant(visit.date)},
        "reasonCode": [{"text": _string(visit.diagnosis)}],
        "location": [{"location": location}],
    }


def _procedure(visit: ConsultationRecord, *, subject: Json, encounter: Json) -> Json:
    return {
        "resourceType": "Procedure",
        "id": f"procedure-{visit.id}",
        "meta": _meta(visit.updated_at),
        "status": "completed",
        "code": {"text": _string(visit.treatment)},
        "subject": subject,
        "encounter": encounter,
        "performedDateTime": _instant(visit.date),
    }


def _meta(updated_at: datetime) -> Json:
    return {"lastUpdated": _instant(updated_at)}


def _instant(value: datetime) -> str:
    """ISO 8601 in UTC with its offset and at least seconds: a FHIR ``instant`` (and so also a
    valid ``dateTime``)."""
    return as_utc(value).isoformat()


def _string(value: str) -> str:
    return value.translate(_FHIR_STRING)
