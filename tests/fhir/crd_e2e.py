#!/usr/bin/env python3
"""End-to-end checks of carepath's coverage requirements discovery (Da Vinci CRD over
CDS Hooks) and documentation templates (Da Vinci DTR), made with an independent FHIR
library: every order sent back in a system action, every Questionnaire package and
every QuestionnaireResponse is parsed by fhir.resources as the R4 resource it claims.

    python3 tests/fhir/crd_e2e.py --base http://127.0.0.1:PORT \
        --client-id ID --key ID.key.pem --gold-npi 1184649790

`--client-id` is a registered client (its key signs every hook call's JWT and its
token exchange); `--gold-npi` is a practitioner who holds a gold-card exemption for
advanced imaging. One line is printed per passing check; the first failure prints
what was expected and what came back, and the script exits 1. The last line names
the coverage assertion and the case it was cited by:

    linked ASSERTION_ID CASE_ID
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import jwt
    import requests
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.questionnaire import Questionnaire
    from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

    import pas_e2e as pas
except ImportError as missing:  # exit 3: nothing was checked
    print(
        f"missing Python package ({missing}); run "
        "`python3 -m pip install -r tests/fhir/requirements.txt`",
        file=sys.stderr,
    )
    sys.exit(3)

from pas_e2e import CheckFailed, expect, passed, parse_resource  # noqa: E402

COVERAGE_INFO = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
REQUESTED_SERVICE = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-requestedService"
MEMBER_SYSTEM = "urn:carepath:member-id"
IN_NETWORK = "1184649790"  # the demo imaging centre
OUT_OF_NETWORK = "1787245327"  # an imaging centre outside the demo member's network
INTERNIST = "1234358301"
HTTP_TIMEOUT_S = 30


def hook_jwt(client: pas.Client, audience: str, *, key=None, kid: str | None = None) -> str:
    """The JWT a CDS client signs for one call (CDS Hooks: iss, sub = client id, aud =
    the service's URL, exp, iat, jti)."""
    now = int(time.time())
    claims = {
        "iss": "http://ehr.example.org/fhir",
        "sub": client.client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key or client.key, algorithm="ES384", headers={"kid": kid or client.kid, "typ": "JWT"})


def npi_resource(kind: str, rid: str, npi: str) -> dict:
    return {"resourceType": kind, "id": rid, "identifier": pas.npi_identifier(npi)}


def order(rid: str, code: str, *, performer: str, requester: str, place: str, when: str, reason: str) -> dict:
    """A draft ServiceRequest as an EHR sends it at signing (CRD's examples' shape)."""
    return {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": "draft",
        "intent": "original-order",
        "code": {"coding": [{"system": pas.CPT, "code": code}]},
        "subject": {"reference": "Patient/pat-1"},
        "occurrenceDateTime": when,
        "authoredOn": dt.date.today().isoformat(),
        "requester": {"reference": f"PractitionerRole/{requester}"},
        "performer": [{"reference": f"Organization/{performer}"}],
        "locationCode": [{"coding": [{"system": pas.POS, "code": place}]}],
        "reasonCode": [{"coding": [{"system": pas.ICD10, "code": reason}]}],
    }


def prefetch(member: str, practitioners: dict[str, str], organizations: dict[str, str]) -> dict:
    """The prefetch the services' discovery asks for: the patient, the coverage, and the
    practitioners (with their roles) and organizations named by the orders."""
    roles = []
    for rid, npi in practitioners.items():
        roles.append({"resource": {"resourceType": "PractitionerRole", "id": rid, "practitioner": {"reference": f"Practitioner/{rid}"}}})
        roles.append({"resource": npi_resource("Practitioner", rid, npi)})
    for rid, npi in organizations.items():
        roles.append({"resource": npi_resource("Organization", rid, npi)})
    return {
        "patient": {"resourceType": "Patient", "id": "pat-1", "identifier": [{"system": MEMBER_SYSTEM, "value": member}]},
        "coverage": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": {"resourceType": "Coverage", "id": "cov-1", "status": "active", "subscriberId": member,
                                    "beneficiary": {"reference": "Patient/pat-1"}, "payor": [{"display": "carepath"}]}}],
        },
        "practitionerRoles": {"resourceType": "Bundle", "type": "searchset", "entry": roles},
    }


def coverage_information(resource: dict) -> dict[str, object]:
    """The coverage-information extension of an order, as {sub-extension: value}
    (lists where a sub-extension repeats)."""
    found = [e for e in resource.get("extension", []) if e.get("url") == COVERAGE_INFO]
    expect(len(found) == 1, f"one coverage-information extension, got {json.dumps(resource)[:1500]}")
    out: dict[str, object] = {}
    for part in found[0]["extension"]:
        value = next(v for k, v in part.items() if k.startswith("value"))
        if part["url"] in out:
            previous = out[part["url"]]
            out[part["url"]] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            out[part["url"]] = value
    return out


class Run:
    def __init__(self, args):
        self.base = args.base.rstrip("/")
        self.fhir = self.base + "/fhir"
        self.me = pas.Client(args.client_id, args.key, args.npi, args.kid)
        self.gold_npi = args.gold_npi
        self.http = requests.Session()
        self.service_date = (dt.date.today() + dt.timedelta(days=14)).isoformat()

    # CDS Hooks calls

    def hook(self, service: str, body: dict, *, token: str | None = None) -> requests.Response:
        url = f"{self.base}/cds-services/{service}"
        headers = {"Content-Type": "application/json"}
        headers["Authorization"] = f"Bearer {token if token is not None else hook_jwt(self.me, url)}"
        return self.http.post(url, data=json.dumps(body), headers=headers, timeout=HTTP_TIMEOUT_S)

    def order_sign(self, orders: list[dict], *, member: str = pas.MEMBER, practitioners=None, organizations=None) -> dict:
        body = {
            "hook": "order-sign",
            "hookInstance": str(uuid.uuid4()),
            "fhirServer": "http://ehr.example.org/fhir",
            "context": {
                "userId": "PractitionerRole/ordering",
                "patientId": "pat-1",
                "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in orders]},
            },
            "prefetch": prefetch(member, practitioners or {"ordering": INTERNIST}, organizations or {}),
        }
        response = self.hook("crd-order-sign", body)
        expect(response.status_code == 200, f"order-sign: 200 expected, got {response.status_code}: {response.text[:1500]}")
        answer = response.json()
        expect(isinstance(answer.get("cards"), list), f"cards, got {answer}")
        for card in answer["cards"]:
            expect(len(card.get("summary", "")) <= 140, f"a summary of at most 140 characters: {card}")
            expect(card.get("indicator") in ("info", "warning", "critical"), f"an indicator: {card}")
            expect(card.get("source", {}).get("label"), f"a source label: {card}")
        return answer

    def updated(self, answer: dict, kind: str = "ServiceRequest") -> list[dict]:
        """The orders the system actions update, each parsed as R4."""
        actions = answer.get("systemActions", [])
        for action in actions:
            expect(action.get("type") == "update", f"an update action, got {action}")
            parse_resource(action["resource"], kind)
        return [a["resource"] for a in actions]

    def mri(self, rid: str, *, performer: str, requester: str = "ordering") -> dict:
        return order(rid, "70551", performer=performer, requester=requester, place="22", when=self.service_date, reason="G43.909")

    # The checks

    def discovery(self):
        response = self.http.get(f"{self.base}/cds-services", timeout=HTTP_TIMEOUT_S)
        expect(response.status_code == 200, f"discovery: 200, got {response.status_code}")
        services = {s["hook"]: s for s in response.json()["services"]}
        for hook in ("order-sign", "order-select", "appointment-book"):
            expect(hook in services, f"a service for {hook}, got {sorted(services)}")
            expect("coverage" in services[hook].get("prefetch", {}), f"{hook} prefetches the coverage")
        passed("discovery lists order-sign, order-select and appointment-book with their prefetch templates")

    def in_network_mri(self) -> dict:
        answer = self.order_sign([self.mri("mri-1", performer="imaging")], organizations={"imaging": IN_NETWORK})
        (updated,) = self.updated(answer)
        info = coverage_information(updated)
        expect(info["covered"] == "covered", f"covered, got {info}")
        expect(info["pa-needed"] == "auth-needed", f"auth-needed, got {info}")
        expect(info["doc-needed"] == "clinical", f"clinical documentation, got {info}")
        expect(str(info["questionnaire"]).endswith("/Questionnaire/IMG-MRI|2027.1") or "/Questionnaire/IMG-MRI|" in str(info["questionnaire"]),
               f"the MRI rule's questionnaire, got {info}")
        expect(str(info["coverage-assertion-id"]).startswith("CA-"), f"an assertion id, got {info}")
        expect("IMG-MRI" in info["reason"]["text"] and "version" in info["reason"]["text"], f"the rule and list version as the reason, got {info}")
        expect(info["coverage"] == {"reference": "Coverage/cov-1"}, f"the prefetched coverage, got {info}")
        card = answer["cards"][0]
        expect(card["indicator"] == "warning" and "Prior authorization needed" in card["summary"], f"a card saying so, got {card}")
        expect("clinical_notes" in card["detail"] and "red_flag_symptoms" in card["detail"], f"what to send and answer, got {card}")
        expect(any("/Questionnaire/IMG-MRI-" in link["url"] for link in card.get("links", [])), f"a link to the questionnaire, got {card}")
        passed(f"an in-network MRI needs prior authorization, documentation and questionnaire {info['questionnaire']}")
        return updated

    def psychotherapy(self):
        visit = order("visit-1", "90834", performer="internist-org", requester="ordering", place="11", when=self.service_date, reason="F41.1")
        answer = self.order_sign([visit], organizations={"internist-org": INTERNIST})
        (updated,) = self.updated(answer)
        info = coverage_information(updated)
        expect((info["covered"], info["pa-needed"]) == ("covered", "no-auth"), f"covered without authorization, got {info}")
        expect("questionnaire" not in info and "doc-needed" not in info, f"nothing to fill in, got {info}")
        expect(answer["cards"][0]["indicator"] == "info", f"an information card, got {answer['cards']}")
        passed("a psychotherapy visit needs no prior authorization")

    def out_of_network(self):
        answer = self.order_sign([self.mri("mri-oon", performer="far-away")], organizations={"far-away": OUT_OF_NETWORK})
        (updated,) = self.updated(answer)
        info = coverage_information(updated)
        expect(info["pa-needed"] == "auth-needed", f"auth-needed, got {info}")
        codes = [c["code"] for c in info["reason"].get("coding", [])]
        expect("auth-out-network" in codes, f"the out-of-network reason, got {info}")
        expect("member must ask" in answer["cards"][0]["summary"], f"the member is responsible, got {answer['cards'][0]}")
        passed("an out-of-network MRI: the member must ask")

    def gold_card(self):
        answer = self.order_sign(
            [self.mri("mri-gold", performer="imaging", requester="gold")],
            practitioners={"gold": self.gold_npi},
            organizations={"imaging": IN_NETWORK},
        )
        (updated,) = self.updated(answer)
        info = coverage_information(updated)
        expect(info["pa-needed"] == "satisfied", f"satisfied, got {info}")
        expect(info.get("satisfied-pa-id") == info["coverage-assertion-id"], f"a satisfied-pa-id, got {info}")
        expect("gold-card" in [c["code"] for c in info["reason"].get("coding", [])], f"the gold-card reason, got {info}")
        expect("questionnaire" not in info, f"nothing to fill in, got {info}")
        passed(f"a practitioner with a gold card ({self.gold_npi}) is satisfied without review")

    def unknown_member(self):
        answer = self.order_sign([self.mri("mri-x", performer="imaging")], member="M999999", organizations={"imaging": IN_NETWORK})
        expect(answer.get("systemActions") == [], f"no action for an unknown member, got {answer}")
        expect(len(answer["cards"]) == 1 and "no member" in answer["cards"][0]["summary"], f"a card saying so, got {answer}")
        passed("an unknown member gets a card saying so, not an error")

    def refusals(self):
        body = {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "context": {}}
        url = f"{self.base}/cds-services/crd-order-sign"
        forged_key = pas.ec.generate_private_key(pas.ec.SECP384R1())
        for what, token in [
            ("a JWT signed by another key", hook_jwt(self.me, url, key=forged_key)),
            ("a JWT for another service", hook_jwt(self.me, f"{self.base}/cds-services/crd-order-select")),
            ("no JWT at all", "not-a-jwt"),
        ]:
            response = self.hook("crd-order-sign", body, token=token)
            expect(response.status_code == 401, f"{what}: 401 expected, got {response.status_code}: {response.text[:500]}")
        token = hook_jwt(self.me, url)
        self.hook("crd-order-sign", body, token=token)
        replay = self.hook("crd-order-sign", body, token=token)
        expect(replay.status_code == 401, f"a replayed JWT: 401 expected, got {replay.status_code}")
        passed("a bad JWT (wrong key, wrong audience, none, replayed) is refused with 401")

    def package(self, ordered: dict) -> tuple[dict, dict]:
        token = self.token("system/Questionnaire.r system/Claim.cr")
        parameters = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "coverage", "resource": {"resourceType": "Coverage", "id": "cov-1", "status": "active", "subscriberId": pas.MEMBER,
                                                  "beneficiary": {"reference": "Patient/pat-1"}, "payor": [{"display": "carepath"}]}},
                {"name": "order", "resource": ordered},
            ],
        }
        parse_resource(parameters, "Parameters")
        response = self.http.post(
            f"{self.fhir}/Questionnaire/$questionnaire-package",
            data=json.dumps(parameters),
            headers={"Content-Type": pas.FHIR_JSON, "Authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT_S,
        )
        body, _ = pas.parse_response(response, 200, "Parameters")
        bundles = [p["resource"] for p in body["parameter"] if p["name"] == "PackageBundle"]
        expect(len(bundles) == 1, f"one package Bundle, got {json.dumps(body)[:1500]}")
        bundle = Bundle.model_validate(bundles[0])
        expect(bundle.type == "collection", f"a collection Bundle, got {bundle.type}")
        questionnaire = bundle.entry[0].resource
        expect(isinstance(questionnaire, Questionnaire), f"the Questionnaire first, got {type(questionnaire)}")
        draft = bundle.entry[1].resource
        expect(isinstance(draft, QuestionnaireResponse), f"a draft QuestionnaireResponse, got {type(draft)}")
        groups = {g.linkId: g for g in questionnaire.item}
        questions = [i.linkId for i in groups["questions"].item]
        expect(questions == ["red_flag_symptoms", "conservative_therapy_weeks"], f"the rule's questions, got {questions}")
        kinds = [i.type for i in groups["questions"].item]
        expect(kinds == ["boolean", "decimal"], f"their answer types, got {kinds}")
        expect(all(i.required for i in groups["questions"].item), "questions required")
        when = groups["questions"].item[1].enableWhen
        expect(when is not None and when[0].question == "red_flag_symptoms" and when[0].answerBoolean is False,
               f"weeks of therapy asked only without red flags, got {when}")
        documents = [(i.linkId, i.type) for i in groups["documents"].item]
        expect(documents == [("clinical_notes", "attachment")], f"the documents to send, got {documents}")
        expect(questionnaire.version and draft.questionnaire == f"{questionnaire.url}|{questionnaire.version}",
               f"the draft answers this version, got {draft.questionnaire}")
        passed(f"$questionnaire-package returns Questionnaire {questionnaire.url}|{questionnaire.version} with the rule's questions and documents")
        return json.loads(questionnaire.model_dump_json()), json.loads(draft.model_dump_json())

    def token(self, scope: str) -> str:
        config = self.http.get(f"{self.fhir}/.well-known/smart-configuration", timeout=HTTP_TIMEOUT_S).json()
        response = self.http.post(
            config["token_endpoint"],
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": pas.ASSERTION_TYPE,
                "client_assertion": pas.client_assertion(self.me.client_id, self.me.key, config["token_endpoint"], self.me.kid),
                "scope": scope,
            },
            timeout=HTTP_TIMEOUT_S,
        )
        expect(response.status_code == 200, f"a token: 200 expected, got {response.status_code}: {response.text}")
        return response.json()["access_token"]

    def submit_answers(self, questionnaire: dict, draft: dict, ordered: dict) -> str:
        """Fills in the draft with fhir.resources (a red flag, so the therapy question is
        not asked; the clinical notes attached) and sends it with a PAS request citing
        the ordered MRI: approved at once."""
        qr = dict(draft)
        qr.update({
            "id": "dtr-answers",
            "status": "completed",
            "subject": {"reference": "Patient/beneficiary-1"},
            "authored": pas.now_instant(),
            "item": [
                {"linkId": "questions", "item": [{"linkId": "red_flag_symptoms", "answer": [{"valueBoolean": True}]}]},
                {"linkId": "documents", "item": [{"linkId": "clinical_notes", "answer": [
                    {"valueAttachment": {"contentType": "text/plain", "url": "urn:ehr:note:mri-1", "title": "Neurology note"}}]}]},
            ],
        })
        qr = json.loads(QuestionnaireResponse.model_validate(qr).model_dump_json())
        expect(qr["questionnaire"].startswith(questionnaire["url"]), "the response answers the questionnaire")
        resources, refs = pas.parties(self.me.npi, "Organization")
        requested = dict(ordered, id="ordered-mri", subject=refs["patient"])
        resources += [qr, requested]
        request_id = f"crd-e2e-{uuid.uuid4().hex[:10]}"
        claim = {
            "resourceType": "Claim",
            "id": "claim-1",
            "identifier": pas.claim_identifier(request_id),
            "status": "active",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
            "use": "preauthorization",
            "patient": refs["patient"],
            "created": pas.now_instant(),
            "insurer": refs["insurer"],
            "provider": refs["provider"],
            "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
            "supportingInfo": [{
                "sequence": 1,
                "category": {"coding": [{"system": "http://hl7.org/fhir/us/davinci-pas/CodeSystem/PASSupportingInfoType", "code": "additionalInformation"}]},
                "valueReference": {"reference": "QuestionnaireResponse/dtr-answers"},
            }],
            "diagnosis": [{"sequence": 1, "diagnosisCodeableConcept": {"coding": [{"system": pas.ICD10, "code": "G43.909"}]}}],
            "insurance": [{"sequence": 1, "focal": True, "coverage": refs["coverage"]}],
            "item": [{
                "sequence": 1,
                "extension": [{"url": REQUESTED_SERVICE, "valueReference": {"reference": "ServiceRequest/ordered-mri"}}],
                "category": {"coding": [{"system": "https://codesystem.x12.org/005010/1365", "code": "73"}]},
                "productOrService": {"coding": [{"system": pas.CPT, "code": "70551"}]},
                "servicedDate": self.service_date,
                "locationCodeableConcept": {"coding": [{"system": pas.POS, "code": "22"}]},
                "quantity": {"value": 1},
            }],
        }
        bundle = {
            "resourceType": "Bundle",
            "identifier": {"system": "urn:carepath:e2e:bundle", "value": request_id},
            "type": "collection",
            "timestamp": pas.now_instant(),
            "entry": [pas.entry(claim)] + [pas.entry(r) for r in resources],
        }
        Bundle.model_validate(bundle)
        token = self.token("system/Claim.cr")
        response = self.http.post(
            f"{self.fhir}/Claim/$submit",
            data=json.dumps(bundle),
            headers={"Content-Type": pas.FHIR_JSON, "Authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT_S,
        )
        body, _ = pas.parse_response(response, 200, "Bundle")
        claim_response = pas.claim_response_of(body)
        pas.expect_action(claim_response, "A1", "the questionnaire's answers meet the rule")
        passed("a QuestionnaireResponse built from the package, sent with PAS $submit, is approved at once (A1)")
        return claim_response["preAuthRef"]

    def all(self):
        self.discovery()
        ordered = self.in_network_mri()
        self.psychotherapy()
        self.out_of_network()
        self.gold_card()
        self.unknown_member()
        self.refusals()
        questionnaire, draft = self.package(ordered)
        case_id = self.submit_answers(questionnaire, draft, ordered)
        print(f"linked {coverage_information(ordered)['coverage-assertion-id']} {case_id}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--kid")
    parser.add_argument("--npi", default=IN_NETWORK, help="the client's NPI")
    parser.add_argument("--gold-npi", required=True, help="a practitioner with a gold card for advanced imaging")
    args = parser.parse_args()
    try:
        Run(args).all()
    except CheckFailed as failed:
        print(f"FAIL {failed}", file=sys.stderr, flush=True)
        return 1
    except requests.RequestException as failed:
        print(f"FAIL the server could not be reached: {failed}", file=sys.stderr, flush=True)
        return 1
    print("all CRD and DTR end-to-end checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
