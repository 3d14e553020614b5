#!/usr/bin/env python3
"""End-to-end checks of carepath's FHIR door (Da Vinci PAS on FHIR R4), made with an
independent FHIR library: every Bundle sent is validated by fhir.resources before it
goes out, and every body that comes back is parsed as the resource type it claims.

    python3 tests/fhir/pas_e2e.py --base http://127.0.0.1:PORT \
        --client-id ID --key ID.key.pem --npi 1184649790 \
        --other-client-id ID2 --other-key ID2.key.pem --other-npi 1234358301 \
        --decide-cmd "COMMAND THAT APPROVES A CASE"

One line is printed per passing check; the first failure prints what was expected and
what came back, and the script exits 1. `--decide-cmd` is run with the case id
appended; it must approve that pended case as a physician reviewer would.

    python3 tests/fhir/pas_e2e.py --self-test

checks what can be checked without a server: every request Bundle validates as R4,
client assertions sign and verify against the JWKS of their key, and the notification
receiver takes a notification Bundle.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.server
import json
import queue
import shlex
import subprocess
import sys
import threading
import time
import uuid

try:
    import jwt
    import requests
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.bundle import Bundle
except ImportError as missing:  # exit 3: nothing was checked
    print(
        f"missing Python package ({missing}); run "
        "`python3 -m pip install -r tests/fhir/requirements.txt`",
        file=sys.stderr,
    )
    sys.exit(3)

PAS = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
PAS_TOPIC = "http://hl7.org/fhir/us/davinci-pas/SubscriptionTopic/PASSubscriptionTopic"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
CPT = "http://www.ama-assn.org/go/cpt"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
POS = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
REVIEW_ACTION = PAS + "extension-reviewAction"
X12_306 = "https://codesystem.x12.org/005010/306"
PRECERT_DOCUMENT = "urn:carepath:precert-document"
FHIR_JSON = "application/fhir+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Where the example resources of a request claim to live, as in the guide's examples.
EXAMPLE_BASE = "http://example.org/fhir/"

MEMBER = "M100001"
# How long a notification may take to arrive after a decision.
NOTIFY_WITHIN_S = 30
# Every HTTP call gives up after this long.
HTTP_TIMEOUT_S = 30


class CheckFailed(Exception):
    """A check did not hold; the message says what was expected and what came back."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def passed(check: str) -> None:
    print(f"ok   {check}", flush=True)


# --------------------------------------------------------------------------------------
# Parsing what comes back


def parse_resource(body: dict, expected: str | None = None):
    """Validates `body` as the R4 resource its resourceType names (and, when given,
    checks that type is `expected`); returns the model."""
    kind = body.get("resourceType") if isinstance(body, dict) else None
    expect(kind is not None, f"a FHIR resource, got {str(body)[:300]}")
    if expected is not None:
        expect(kind == expected, f"a {expected}, got a {kind}: {json.dumps(body)[:800]}")
    try:
        return get_fhir_model_class(kind).model_validate(body)
    except Exception as invalid:  # pydantic's ValidationError, or an unknown type
        raise CheckFailed(f"the {kind} does not validate as R4: {invalid}") from None


def parse_response(response: requests.Response, status, expected: str):
    """Checks the status (one code or a tuple of them) and the content type, then
    parses the body as `expected`; returns (json dict, model)."""
    allowed = status if isinstance(status, tuple) else (status,)
    where = f"{response.request.method} {response.request.url}"
    expect(
        response.status_code in allowed,
        f"{where}: status {'/'.join(map(str, allowed))} expected, got "
        f"{response.status_code}: {response.text[:1500]}",
    )
    content_type = response.headers.get("Content-Type", "")
    expect(
        content_type.split(";")[0].strip() in (FHIR_JSON, "application/json"),
        f"{where}: a FHIR JSON content type expected, got {content_type!r}",
    )
    try:
        body = response.json()
    except ValueError:
        raise CheckFailed(f"{where}: the body is not JSON: {response.text[:500]}") from None
    return body, parse_resource(body, expected)


def outcome(response: requests.Response, status, code: str | None = None) -> dict:
    """An OperationOutcome with `status`; `code`, when given, must be an issue's code."""
    body, _ = parse_response(response, status, "OperationOutcome")
    issues = body.get("issue", [])
    expect(issues, f"an OperationOutcome with issues, got {body}")
    if code is not None:
        expect(
            any(i.get("code") == code for i in issues),
            f"an issue with code {code!r}, got {body}",
        )
    return body


def entries(bundle: dict, kind: str) -> list[dict]:
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if e.get("resource", {}).get("resourceType") == kind
    ]


def claim_response_of(bundle: dict) -> dict:
    found = entries(bundle, "ClaimResponse")
    expect(found, f"a ClaimResponse in the Bundle, got {json.dumps(bundle)[:1500]}")
    return found[0]


def review_action(claim_response: dict, item: int = 0) -> str | None:
    """The X12 306 review action code of `item`'s first adjudication."""
    items = claim_response.get("item", [])
    expect(len(items) > item, f"ClaimResponse.item[{item}], got {claim_response}")
    for adjudication in items[item].get("adjudication", []):
        for extension in adjudication.get("extension", []):
            if extension.get("url") != REVIEW_ACTION:
                continue
            for part in extension.get("extension", []):
                if part.get("url") == "code":
                    for coding in part.get("valueCodeableConcept", {}).get("coding", []):
                        if coding.get("system") == X12_306:
                            return coding.get("code")
    return None


def expect_action(claim_response: dict, code: str, what: str) -> None:
    found = review_action(claim_response)
    expect(
        found == code,
        f"{what}: review action {code} expected, got {found}: "
        f"{json.dumps(claim_response)[:2000]}",
    )


def parameter(parameters: dict, name: str) -> list[dict]:
    return [p for p in parameters.get("parameter", []) if p.get("name") == name]


def part(parent: dict, name: str) -> dict | None:
    return next((p for p in parent.get("part", []) if p.get("name") == name), None)


# --------------------------------------------------------------------------------------
# Building requests in the shape of the PAS guide's examples


def full_url(kind: str, rid: str) -> str:
    return f"{EXAMPLE_BASE}{kind}/{rid}"


def entry(resource: dict) -> dict:
    return {"fullUrl": full_url(resource["resourceType"], resource["id"]), "resource": resource}


def npi_identifier(npi: str) -> list[dict]:
    return [{"system": NPI_SYSTEM, "value": npi}]


def parties(npi: str, requester: str) -> tuple[list[dict], dict]:
    """The Patient, Coverage, insurer and requester of a request, and the references
    the Claim makes to them. `requester` is "Organization" or "Practitioner"."""
    patient = {
        "resourceType": "Patient",
        "id": "beneficiary-1",
        "meta": {"profile": [PAS + "profile-beneficiary"]},
        "identifier": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "code": "MB",
                        }
                    ]
                },
                "system": "urn:carepath:member-id",
                "value": MEMBER,
            }
        ],
        "name": [{"family": "Whitcombe", "given": ["Dana"]}],
        "gender": "female",
        "birthDate": "1971-04-12",
    }
    insurer = {
        "resourceType": "Organization",
        "id": "insurer-1",
        "meta": {"profile": [PAS + "profile-insurer"]},
        "active": True,
        "type": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                        "code": "pay",
                    }
                ]
            }
        ],
        "name": "carepath health plan",
    }
    coverage = {
        "resourceType": "Coverage",
        "id": "coverage-1",
        "meta": {"profile": [PAS + "profile-coverage"]},
        "status": "active",
        "subscriberId": MEMBER,
        "beneficiary": {"reference": "Patient/beneficiary-1"},
        "relationship": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                    "code": "self",
                }
            ]
        },
        "payor": [{"reference": "Organization/insurer-1"}],
    }
    if requester == "Organization":
        provider = {
            "resourceType": "Organization",
            "id": "requestor-1",
            "meta": {"profile": [PAS + "profile-requestor"]},
            "active": True,
            "identifier": npi_identifier(npi),
            "type": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                            "code": "prov",
                        }
                    ]
                }
            ],
            "name": "Requesting imaging center",
        }
    else:
        provider = {
            "resourceType": "Practitioner",
            "id": "requestor-1",
            "meta": {"profile": [PAS + "profile-practitioner"]},
            "identifier": npi_identifier(npi),
            "name": [{"family": "Requester", "given": ["Pat"]}],
        }
    references = {
        "patient": {"reference": "Patient/beneficiary-1"},
        "insurer": {"reference": "Organization/insurer-1"},
        "provider": {"reference": f"{requester}/requestor-1"},
        "coverage": {"reference": "Coverage/coverage-1"},
    }
    return [patient, coverage, insurer, provider], references


def claim_identifier(request_id: str) -> list[dict]:
    return [{"system": "urn:carepath:e2e:request-id", "value": request_id}]


def now_instant() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def request_bundle(
    request_id: str,
    npi: str,
    answers: dict,
    documents: list[tuple[str, str]],
    *,
    service_system: str = CPT,
    service_code: str = "70553",
    requester: str = "Organization",
) -> dict:
    """A PAS request Bundle for a routine outpatient MRI of the brain (`service_code`
    in `service_system`) for the demo member, asked for by `npi`, with `answers`
    (question id → value) in a QuestionnaireResponse and one DocumentReference per
    (record id, document code) in `documents`. Validated as R4 before it is returned."""
    resources, refs = parties(npi, requester)
    service_date = (dt.date.today() + dt.timedelta(days=7)).isoformat()
    supporting, sequence = [], 1
    info_category = {
        "coding": [
            {
                "system": "http://hl7.org/fhir/us/davinci-pas/CodeSystem/PASSupportingInfoType",
                "code": "additionalInformation",
            }
        ]
    }
    if answers:
        items = []
        for link_id, value in answers.items():
            if isinstance(value, bool):
                answer = {"valueBoolean": value}
            elif isinstance(value, int):
                answer = {"valueInteger": value}
            elif isinstance(value, float):
                answer = {"valueDecimal": value}
            else:
                answer = {"valueString": str(value)}
            items.append({"linkId": link_id, "answer": [answer]})
        resources.append(
            {
                "resourceType": "QuestionnaireResponse",
                "id": "answers-1",
                "status": "completed",
                "subject": refs["patient"],
                "authored": now_instant(),
                "item": items,
            }
        )
        supporting.append(
            {
                "sequence": sequence,
                "category": info_category,
                "valueReference": {"reference": "QuestionnaireResponse/answers-1"},
            }
        )
        sequence += 1
    for record_id, document in documents:
        notes = f"Clinical notes for request {request_id}: headaches for three weeks."
        resources.append(
            {
                "resourceType": "DocumentReference",
                "id": record_id,
                "status": "current",
                "type": {"coding": [{"system": PRECERT_DOCUMENT, "code": document}]},
                "subject": refs["patient"],
                "content": [
                    {
                        "attachment": {
                            "contentType": "text/plain",
                            "data": base64.b64encode(notes.encode()).decode(),
                        }
                    }
                ],
            }
        )
        supporting.append(
            {
                "sequence": sequence,
                "category": info_category,
                "valueReference": {"reference": f"DocumentReference/{record_id}"},
            }
        )
        sequence += 1
    claim = {
        "resourceType": "Claim",
        "id": "claim-1",
        "meta": {"profile": [PAS + "profile-claim"]},
        "identifier": claim_identifier(request_id),
        "status": "active",
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/claim-type",
                    "code": "professional",
                }
            ]
        },
        "use": "preauthorization",
        "patient": refs["patient"],
        "created": now_instant(),
        "insurer": refs["insurer"],
        "provider": refs["provider"],
        "priority": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/processpriority",
                    "code": "normal",
                }
            ]
        },
        "careTeam": [{"sequence": 1, "provider": refs["provider"]}],
        "supportingInfo": supporting,
        "diagnosis": [
            {
                "sequence": 1,
                "diagnosisCodeableConcept": {"coding": [{"system": ICD10, "code": "G43.909"}]},
            }
        ],
        "insurance": [{"sequence": 1, "focal": True, "coverage": refs["coverage"]}],
        "item": [
            {
                "sequence": 1,
                "careTeamSequence": [1],
                "diagnosisSequence": [1],
                "informationSequence": [s["sequence"] for s in supporting],
                "productOrService": {
                    "coding": [{"system": service_system, "code": service_code}]
                },
                "servicedDate": service_date,
                "locationCodeableConcept": {"coding": [{"system": POS, "code": "22"}]},
                "quantity": {"value": 1},
            }
        ],
    }
    if not supporting:
        del claim["supportingInfo"], claim["item"][0]["informationSequence"]
    bundle = {
        "resourceType": "Bundle",
        "id": f"request-{uuid.uuid4()}",
        "meta": {"profile": [PAS + "profile-pas-request-bundle"]},
        "identifier": {"system": "urn:carepath:e2e:submission", "value": str(uuid.uuid4())},
        "type": "collection",
        "timestamp": now_instant(),
        "entry": [entry(claim)] + [entry(r) for r in resources],
    }
    return validated(bundle)


def inquiry_bundle(request_id: str, npi: str, requester: str = "Organization") -> dict:
    """A PAS inquiry request Bundle asking after the request `request_id`."""
    resources, refs = parties(npi, requester)
    claim = {
        "resourceType": "Claim",
        "id": "inquiry-1",
        "meta": {"profile": [PAS + "profile-claim-inquiry"]},
        "identifier": claim_identifier(request_id),
        "status": "active",
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/claim-type",
                    "code": "professional",
                }
            ]
        },
        "use": "preauthorization",
        "patient": refs["patient"],
        "created": now_instant(),
        "insurer": refs["insurer"],
        "provider": refs["provider"],
        "priority": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/processpriority",
                    "code": "normal",
                }
            ]
        },
        "insurance": [{"sequence": 1, "focal": True, "coverage": refs["coverage"]}],
    }
    bundle = {
        "resourceType": "Bundle",
        "id": f"inquiry-{uuid.uuid4()}",
        "meta": {"profile": [PAS + "profile-pas-inquiry-request-bundle"]},
        "identifier": {"system": "urn:carepath:e2e:inquiry", "value": str(uuid.uuid4())},
        "type": "collection",
        "timestamp": now_instant(),
        "entry": [entry(claim)] + [entry(r) for r in resources],
    }
    return validated(bundle)


def subscription(npi: str, endpoint: str, header: str) -> dict:
    """An R4 backport Subscription to the PAS topic for `npi`'s requests."""
    body = {
        "resourceType": "Subscription",
        "meta": {"profile": [BACKPORT + "backport-subscription"]},
        "status": "requested",
        "reason": "Follow pended prior authorization requests",
        "criteria": PAS_TOPIC,
        "_criteria": {
            "extension": [
                {
                    "url": BACKPORT + "backport-filter-criteria",
                    "valueString": f"orgIdentifier={npi}",
                }
            ]
        },
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": FHIR_JSON,
            "_payload": {
                "extension": [
                    {
                        "url": BACKPORT + "backport-payload-content",
                        "valueCode": "full-resource",
                    }
                ]
            },
            "header": [header],
        },
    }
    parse_resource(body, "Subscription")
    return body


def validated(bundle: dict) -> dict:
    try:
        Bundle.model_validate(bundle)
    except Exception as invalid:
        raise CheckFailed(f"a request Bundle this script built is not valid R4: {invalid}") from None
    return bundle


# --------------------------------------------------------------------------------------
# SMART backend services: client assertions and tokens


def load_key(path: str):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def client_assertion(client_id: str, key, audience: str, kid: str | None = None) -> str:
    """A private_key_jwt client assertion (ES384), good for five minutes, naming the
    key `kid` (the client id unless told otherwise)."""
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": kid or client_id, "typ": "JWT"})


def public_jwks(client_id: str, key) -> dict:
    """The JWKS that verifies `key`'s assertions (what registration takes)."""
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": client_id, "alg": "ES384", "use": "sig"})
    return {"keys": [jwk]}


class Client:
    """One registered client: its id, key (and the key's id in its JWKS) and NPI."""

    def __init__(self, client_id: str, key_path: str, npi: str, kid: str | None):
        self.client_id = client_id
        self.key = load_key(key_path)
        self.kid = kid or client_id
        self.npi = npi


# --------------------------------------------------------------------------------------
# The notification receiver


class Receiver:
    """A local rest-hook endpoint: every POST is kept (headers and parsed JSON body)."""

    def __init__(self):
        self.received: queue.Queue = queue.Queue()
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the standard library's name)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"unparsable": raw[:500].decode("utf-8", "replace")}
                received.put((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next(self, deadline: float):
        """The next notification, or None once `deadline` (time.monotonic) passes."""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            return self.received.get(timeout=left)
        except queue.Empty:
            return None

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def notification_parts(body: dict) -> tuple[dict, dict | None]:
    """Checks a notification Bundle and returns its SubscriptionStatus Parameters and,
    when one came (full-resource), the response Bundle it carries."""
    parse_resource(body, "Bundle")
    expect(body.get("type") == "history", f"a history Bundle, got type {body.get('type')}")
    items = body.get("entry", [])
    expect(items, "a notification Bundle with entries")
    status = items[0].get("resource", {})
    expect(
        status.get("resourceType") == "Parameters",
        f"entry[0] a Parameters, got {status.get('resourceType')}",
    )
    kinds = [p.get("valueCode") for p in parameter(status, "type")]
    expect(kinds == ["event-notification"], f"type event-notification, got {kinds}")
    focus_bundle = items[1].get("resource") if len(items) > 1 else None
    return status, focus_bundle


# --------------------------------------------------------------------------------------
# The checks


class Run:
    def __init__(self, args):
        self.base = args.base.rstrip("/")
        self.fhir = self.base + "/fhir"
        self.me = Client(args.client_id, args.key, args.npi, args.kid)
        self.other = Client(args.other_client_id, args.other_key, args.other_npi, args.other_kid)
        self.scope = args.scope
        self.decide_cmd = args.decide_cmd
        self.run_id = uuid.uuid4().hex[:12]
        self.http = requests.Session()
        self.token_endpoint = None
        self.receiver = None

    # HTTP helpers

    def request_id(self, name: str) -> str:
        return f"e2e-{self.run_id}-{name}"

    def post(self, path: str, body, token: str | None, content_type: str = FHIR_JSON):
        headers = {"Accept": FHIR_JSON, "Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.http.post(self.fhir + path, data=data, headers=headers, timeout=HTTP_TIMEOUT_S)

    def get(self, path: str, token: str | None):
        headers = {"Accept": FHIR_JSON}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.get(self.fhir + path, headers=headers, timeout=HTTP_TIMEOUT_S)

    def token(self, client: Client, scope: str) -> str:
        response = self.http.post(
            self.token_endpoint,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": client_assertion(client.client_id, client.key, self.token_endpoint, client.kid),
                "scope": scope,
            },
            timeout=HTTP_TIMEOUT_S,
        )
        expect(
            response.status_code == 200,
            f"a token for {client.client_id} ({scope}): 200 expected, got "
            f"{response.status_code}: {response.text[:800]}",
        )
        body = response.json()
        expect(isinstance(body.get("access_token"), str) and body["access_token"], f"an access_token, got {body}")
        expect(str(body.get("token_type", "")).lower() == "bearer", f"token_type bearer, got {body}")
        expect(isinstance(body.get("expires_in"), int) and body["expires_in"] > 0, f"expires_in, got {body}")
        granted = set(str(body.get("scope", "")).split())
        expect(granted and granted <= set(scope.split()), f"scope within {scope!r}, got {body.get('scope')!r}")
        return body["access_token"]

    def submit(self, bundle: dict, token: str) -> dict:
        """$submit that must answer 200 with a PAS response Bundle; its ClaimResponse."""
        body, _ = parse_response(self.post("/Claim/$submit", bundle, token), 200, "Bundle")
        expect(body.get("type") == "collection", f"a collection Bundle, got {body.get('type')}")
        first = body.get("entry", [{}])[0].get("resource", {})
        expect(first.get("resourceType") == "ClaimResponse", f"entry[0] a ClaimResponse, got {first.get('resourceType')}")
        return first

    def inquire(self, request_id: str, client: Client, token: str, requester: str = "Organization"):
        return self.post("/Claim/$inquire", inquiry_bundle(request_id, client.npi, requester), token)

    # The checks, in order

    def discovery(self):
        response = self.http.get(self.fhir + "/.well-known/smart-configuration", timeout=HTTP_TIMEOUT_S)
        expect(response.status_code == 200, f"smart-configuration: 200 expected, got {response.status_code}")
        config = response.json()
        self.token_endpoint = config.get("token_endpoint")
        expect(
            isinstance(self.token_endpoint, str) and self.token_endpoint.endswith("/auth/token"),
            f"a token_endpoint ending /auth/token, got {config}",
        )
        expect("client_credentials" in config.get("grant_types_supported", []), f"client_credentials, got {config}")
        expect("private_key_jwt" in config.get("token_endpoint_auth_methods_supported", []), f"private_key_jwt, got {config}")
        expect("ES384" in config.get("token_endpoint_auth_signing_alg_values_supported", []), f"ES384, got {config}")
        passed(f"smart-configuration names the token endpoint {self.token_endpoint}")
        self.my_token = self.token(self.me, self.scope)
        self.other_token = self.token(self.other, self.scope)
        passed("tokens granted for both clients from ES384 client assertions")

    def metadata(self):
        body, model = parse_response(self.get("/metadata", None), 200, "CapabilityStatement")
        expect(body.get("fhirVersion") == "4.0.1", f"fhirVersion 4.0.1, got {body.get('fhirVersion')}")
        operations = set()
        for rest in body.get("rest", []):
            for resource in rest.get("resource", []):
                if resource.get("type") == "Claim":
                    operations |= {op.get("name", "").lstrip("$") for op in resource.get("operation", [])}
        expect({"submit", "inquire"} <= operations, f"Claim operations submit and inquire, got {sorted(operations)}")
        passed("metadata: CapabilityStatement 4.0.1 lists Claim $submit and $inquire")

    def approved_at_once(self):
        self.approved_id = self.request_id("approved")
        self.approved_bundle = request_bundle(
            self.approved_id,
            self.me.npi,
            {"red_flag_symptoms": True},
            [(f"notes-{self.run_id}-a", "clinical_notes")],
        )
        response = self.submit(self.approved_bundle, self.my_token)
        expect_action(response, "A1", "an MRI with red-flag symptoms and notes")
        expect(response.get("preAuthRef"), f"a preAuthRef, got {response}")
        expect(response.get("id", "").startswith("PA-"), f"a case id PA-..., got {response.get('id')}")
        expect(
            any(i.get("value") == self.approved_id for i in response.get("identifier", [])),
            f"the ClaimResponse echoes the Claim identifier, got {response.get('identifier')}",
        )
        self.approved = response
        passed(f"a: approved at once (A1), case {response['id']}, preAuthRef {response['preAuthRef']}")

    def duplicate(self):
        again = self.submit(self.approved_bundle, self.my_token)
        expect(
            (again.get("id"), again.get("preAuthRef")) == (self.approved["id"], self.approved["preAuthRef"]),
            f"the same ClaimResponse {self.approved['id']} / {self.approved['preAuthRef']}, "
            f"got {again.get('id')} / {again.get('preAuthRef')}",
        )
        passed("b: the same Bundle again returns the same ClaimResponse and preAuthRef")

    def claim_response_reads(self):
        case_id = self.approved["id"]
        read, _ = parse_response(self.get(f"/ClaimResponse/{case_id}", self.my_token), 200, "ClaimResponse")
        expect(read.get("id") == case_id, f"ClaimResponse {case_id}, got {read.get('id')}")
        expect_action(read, "A1", "the approved request read by id")
        found, _ = parse_response(
            self.get(f"/ClaimResponse?identifier={self.approved_id}", self.my_token), 200, "Bundle"
        )
        ids = [e.get("resource", {}).get("id") for e in found.get("entry", [])]
        expect(found.get("type") == "searchset" and ids == [case_id], f"a searchset with {case_id}, got {ids}")
        outcome(self.get(f"/ClaimResponse/{case_id}", self.other_token), 404)
        none, _ = parse_response(
            self.get(f"/ClaimResponse?identifier={self.approved_id}", self.other_token), 200, "Bundle"
        )
        expect(not none.get("entry"), f"another provider's search finds nothing, got {none.get('entry')}")
        passed("b: ClaimResponse read by id and found by identifier; another provider gets 404 and an empty search")

    def subscribe(self):
        self.receiver = Receiver()
        self.header_value = f"e2e-{self.run_id}"
        body = subscription(self.me.npi, self.receiver.url, f"X-Carepath-E2E: {self.header_value}")
        created, _ = parse_response(self.post("/Subscription", body, self.my_token), 201, "Subscription")
        expect(created.get("id"), f"an id assigned, got {created}")
        expect(created.get("status") == "active", f"status active, got {created.get('status')}")
        self.subscription_id = created["id"]
        got, _ = parse_response(self.get(f"/Subscription/{self.subscription_id}", self.my_token), 200, "Subscription")
        expect(got.get("id") == self.subscription_id, f"Subscription {self.subscription_id}, got {got.get('id')}")
        expect(got.get("channel", {}).get("endpoint") == self.receiver.url, f"the endpoint kept, got {got.get('channel')}")
        status, _ = parse_response(
            self.get(f"/Subscription/{self.subscription_id}/$status", self.my_token), 200, "Bundle"
        )
        expect(status.get("type") == "searchset", f"a searchset Bundle, got {status.get('type')}")
        first = status.get("entry", [{}])[0].get("resource", {})
        expect(first.get("resourceType") == "Parameters", f"entry[0] a Parameters, got {first}")
        kinds = [p.get("valueCode") for p in parameter(first, "type")]
        expect(kinds == ["query-status"], f"type query-status, got {kinds}")
        for name in ("subscription", "topic", "status", "events-since-subscription-start"):
            expect(parameter(first, name), f"$status names {name}, got {first}")
        missing = self.get(f"/Subscription/{self.subscription_id}", self.other_token)
        outcome(missing, 404)
        passed(f"c: Subscription {self.subscription_id} created (201), read back, $status parses; another provider gets 404")

    def pended_then_approved(self):
        request_id = self.request_id("pended")
        bundle = request_bundle(
            request_id,
            self.me.npi,
            {"red_flag_symptoms": False, "conservative_therapy_weeks": 2},
            [(f"notes-{self.run_id}-d", "clinical_notes")],
        )
        response = self.submit(bundle, self.my_token)
        expect_action(response, "A4", "no red-flag symptoms and two weeks of therapy")
        case_id = response.get("id")
        expect(case_id, f"a case id, got {response}")
        passed(f"d: pended for review (A4), case {case_id}")

        command = shlex.split(self.decide_cmd) + [case_id]
        decided = subprocess.run(command, capture_output=True, text=True, timeout=120)
        expect(
            decided.returncode == 0,
            f"the decision command {command} failed ({decided.returncode}): {decided.stdout}{decided.stderr}",
        )
        passed(f"d: a physician reviewer approved {case_id}")

        deadline = time.monotonic() + NOTIFY_WITHIN_S
        seen = []
        while True:
            got = self.receiver.next(deadline)
            expect(
                got is not None,
                f"a notification showing {case_id} approved within {NOTIFY_WITHIN_S} s; got {len(seen)}: "
                f"{json.dumps(seen)[:2000]}",
            )
            headers, body = got
            seen.append(body)
            content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
            expect(content_type.split(";")[0].strip() == FHIR_JSON, f"a notification in {FHIR_JSON}, got {content_type!r}")
            sent_header = {k.lower(): v for k, v in headers.items()}.get("x-carepath-e2e")
            expect(sent_header == self.header_value, f"the channel header sent, got {sent_header!r}")
            status, focus = notification_parts(body)
            references = [p.get("valueReference", {}).get("reference", "") for p in parameter(status, "subscription")]
            expect(
                any(r.endswith(f"Subscription/{self.subscription_id}") for r in references),
                f"the notification names Subscription/{self.subscription_id}, got {references}",
            )
            events = parameter(status, "notification-event")
            expect(events, f"a notification-event, got {status}")
            number = part(events[0], "event-number")
            expect(number is not None, f"an event-number, got {events[0]}")
            value = number.get("valueString") or str(number.get("valueUnsignedInt", ""))
            expect(value.isdigit() and int(value) >= 1, f"an event-number of 1 or more, got {number}")
            expect(part(events[0], "focus") is not None, f"a focus, got {events[0]}")
            expect(focus is not None, "a full-resource notification carries the response Bundle")
            parse_resource(focus, "Bundle")
            claim_response = claim_response_of(focus)
            if claim_response.get("id") != case_id:
                continue  # another request's change (tolerated)
            if review_action(claim_response) != "A1":
                continue  # an earlier state, or a duplicate of one (at least once)
            expect(claim_response.get("preAuthRef"), f"a preAuthRef once approved, got {claim_response}")
            passed(f"d: notification event {value} arrived with {case_id} approved (A1)")
            return

    def inquire_approved(self):
        body, _ = parse_response(
            self.inquire(self.approved_id, self.me, self.my_token), 200, "Parameters"
        )
        bundles = [p.get("resource") for p in parameter(body, "responseBundle")]
        expect(bundles and all(bundles), f"responseBundle parts, got {json.dumps(body)[:1500]}")
        response = claim_response_of(bundles[0])
        expect(response.get("id") == self.approved["id"], f"case {self.approved['id']}, got {response.get('id')}")
        expect_action(response, "A1", "the inquiry about the approved request")
        expect(response.get("preAuthRef") == self.approved["preAuthRef"], f"preAuthRef kept, got {response.get('preAuthRef')}")
        passed("e: $inquire finds the approved request (A1)")

    def inquire_not_mine(self):
        response = self.inquire(self.approved_id, self.other, self.other_token, requester="Practitioner")
        outcome(response, 404, "not-found")
        passed("f: another provider's inquiry about it is 404 not-found")

    def bad_claim(self):
        request_id = self.request_id("bad")
        bundle = request_bundle(
            request_id,
            self.me.npi,
            {"red_flag_symptoms": True},
            [(f"notes-{self.run_id}-g", "clinical_notes")],
            service_system="urn:example:not-a-procedure-code-system",
        )
        body = outcome(self.post("/Claim/$submit", bundle, self.my_token), (400, 422))
        expressions = [e for i in body["issue"] for e in i.get("expression", [])]
        expect(
            any("Claim.item[0].productOrService" in e for e in expressions),
            f"an issue at Claim.item[0].productOrService, got {expressions}: {body}",
        )
        outcome(self.inquire(request_id, self.me, self.my_token), 404)
        passed("g: a Claim without a CPT/HCPCS code is refused at Claim.item[0].productOrService; nothing stored")

    def refusals(self):
        bundle = request_bundle(
            self.request_id("refused"),
            self.me.npi,
            {"red_flag_symptoms": True},
            [(f"notes-{self.run_id}-h", "clinical_notes")],
        )
        response = self.post("/Claim/$submit", bundle, None)
        outcome(response, 401)
        challenge = response.headers.get("WWW-Authenticate", "")
        expect(challenge.lower().startswith("bearer"), f"WWW-Authenticate: Bearer, got {challenge!r}")
        read_only = self.token(self.me, "system/Claim.r")
        outcome(self.post("/Claim/$submit", bundle, read_only), 403)
        outcome(self.inquire(self.request_id("refused"), self.me, self.my_token), 404)
        passed("h: no token is 401 (WWW-Authenticate: Bearer); a system/Claim.r token on $submit is 403")

        response = self.post("/Claim/$submit", json.dumps(bundle), self.my_token, content_type="text/plain")
        outcome(response, 415)
        passed("i: a text/plain body is 415")

    def unsubscribe(self):
        response = self.http.delete(
            f"{self.fhir}/Subscription/{self.subscription_id}",
            headers={"Authorization": f"Bearer {self.my_token}", "Accept": FHIR_JSON},
            timeout=HTTP_TIMEOUT_S,
        )
        expect(response.status_code == 204, f"DELETE Subscription: 204 expected, got {response.status_code}: {response.text[:500]}")
        outcome(self.get(f"/Subscription/{self.subscription_id}", self.my_token), 410)
        passed("the Subscription is deleted (204) and then gone (410)")

    def all(self):
        try:
            self.discovery()
            self.metadata()
            self.approved_at_once()
            self.duplicate()
            self.claim_response_reads()
            self.subscribe()
            self.pended_then_approved()
            self.inquire_approved()
            self.inquire_not_mine()
            self.bad_claim()
            self.refusals()
            self.unsubscribe()
        finally:
            if self.receiver is not None:
                self.receiver.stop()


# --------------------------------------------------------------------------------------
# Checks without a server


def self_test() -> None:
    bundles = {
        "approved": request_bundle("r-1", "1184649790", {"red_flag_symptoms": True}, [("n-1", "clinical_notes")]),
        "pended": request_bundle(
            "r-2",
            "1184649790",
            {"red_flag_symptoms": False, "conservative_therapy_weeks": 2},
            [("n-2", "clinical_notes")],
        ),
        "bad": request_bundle("r-3", "1184649790", {}, [], service_system="urn:example:x"),
        "practitioner": request_bundle("r-4", "1234358301", {}, [], requester="Practitioner"),
        "inquiry": inquiry_bundle("r-1", "1184649790"),
        "inquiry by a practitioner": inquiry_bundle("r-1", "1234358301", "Practitioner"),
    }
    for name, bundle in bundles.items():
        references = set()
        for item in bundle["entry"]:
            resource = item["resource"]
            expect(item["fullUrl"].endswith(f"{resource['resourceType']}/{resource['id']}"), "fullUrl matches")
            references.add(f"{resource['resourceType']}/{resource['id']}")
        claim = bundle["entry"][0]["resource"]
        pointed = [claim["patient"], claim["provider"], claim["insurer"], claim["insurance"][0]["coverage"]]
        pointed += [s["valueReference"] for s in claim.get("supportingInfo", [])]
        for reference in pointed:
            expect(reference["reference"] in references, f"{name}: {reference} resolves in the Bundle")
    passed(f"{len(bundles)} request Bundles validate as R4 and their references resolve")

    subscription("1184649790", "http://127.0.0.1:9/notify", "X-Carepath-E2E: x")
    passed("the Subscription validates as R4")

    key = ec.generate_private_key(ec.SECP384R1())
    jwks = public_jwks("client-1", key)
    assertion = client_assertion("client-1", key, "http://127.0.0.1:8080/auth/token")
    header = jwt.get_unverified_header(assertion)
    expect(header == {"alg": "ES384", "kid": "client-1", "typ": "JWT"}, f"the JOSE header, got {header}")
    verifier = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(assertion, verifier, algorithms=["ES384"], audience="http://127.0.0.1:8080/auth/token")
    expect(claims["iss"] == claims["sub"] == "client-1", f"iss = sub = client id, got {claims}")
    expect(0 < claims["exp"] - time.time() <= 300, f"exp within five minutes, got {claims}")
    other = client_assertion("client-1", key, "http://127.0.0.1:8080/auth/token")
    expect(jwt.decode(other, options={"verify_signature": False})["jti"] != claims["jti"], "a fresh jti each time")
    try:
        jwt.decode(assertion, verifier, algorithms=["ES384"], audience="http://elsewhere/auth/token")
        raise CheckFailed("an assertion for another audience must not verify")
    except jwt.InvalidAudienceError:
        pass
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    expect(b"BEGIN PRIVATE KEY" in pem, "PKCS#8 PEM")
    reloaded = serialization.load_pem_private_key(pem, password=None)
    jwt.decode(client_assertion("client-1", reloaded, "aud"), verifier, algorithms=["ES384"], audience="aud")
    passed("ES384 client assertions sign, and verify against the JWKS of their key")

    receiver = Receiver()
    try:
        notification = {
            "resourceType": "Bundle",
            "type": "history",
            "timestamp": now_instant(),
            "entry": [
                {
                    "fullUrl": "urn:uuid:" + str(uuid.uuid4()),
                    "resource": {
                        "resourceType": "Parameters",
                        "parameter": [
                            {"name": "subscription", "valueReference": {"reference": "Subscription/s-1"}},
                            {"name": "topic", "valueCanonical": PAS_TOPIC},
                            {"name": "status", "valueCode": "active"},
                            {"name": "type", "valueCode": "event-notification"},
                            {"name": "events-since-subscription-start", "valueString": "1"},
                            {
                                "name": "notification-event",
                                "part": [
                                    {"name": "event-number", "valueString": "1"},
                                    {"name": "timestamp", "valueInstant": now_instant()},
                                    {"name": "focus", "valueReference": {"reference": "Bundle/b-1"}},
                                ],
                            },
                        ],
                    },
                },
                {
                    "fullUrl": "urn:uuid:" + str(uuid.uuid4()),
                    "resource": {"resourceType": "Bundle", "id": "b-1", "type": "collection", "entry": []},
                },
            ],
        }
        response = requests.post(
            receiver.url,
            data=json.dumps(notification),
            headers={"Content-Type": FHIR_JSON, "X-Carepath-E2E": "x"},
            timeout=HTTP_TIMEOUT_S,
        )
        expect(response.status_code == 200, f"the receiver answers 200, got {response.status_code}")
        headers, body = receiver.next(time.monotonic() + 5)
        status, focus = notification_parts(body)
        expect(part(parameter(status, "notification-event")[0], "event-number")["valueString"] == "1", "event 1")
        expect(focus is not None and focus["id"] == "b-1", "the focus Bundle")
        expect(headers.get("X-Carepath-E2E") == "x", "the channel header kept")
    finally:
        receiver.stop()
    passed("the notification receiver takes and parses a notification Bundle")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--self-test", action="store_true", help="check what needs no server, then exit")
    parser.add_argument("--base", help="the server's public origin, e.g. http://127.0.0.1:8080")
    parser.add_argument("--client-id")
    parser.add_argument("--key", help="the client's ES384 private key (PKCS#8 PEM)")
    parser.add_argument("--npi", default="1184649790", help="the client's NPI (in network for the demo member)")
    parser.add_argument("--kid", help="the key's id in the client's JWKS (default: the client id)")
    parser.add_argument("--other-client-id")
    parser.add_argument("--other-key")
    parser.add_argument("--other-kid", help="the second client's key id (default: its client id)")
    parser.add_argument("--other-npi", default="1234358301", help="the second client's NPI")
    parser.add_argument(
        "--scope",
        default="system/Claim.cr system/ClaimResponse.rs system/Subscription.crd",
        help="the scopes both clients ask for (as registered)",
    )
    parser.add_argument("--decide-cmd", help="approves a pended case; run with the case id appended")
    args = parser.parse_args()
    try:
        if args.self_test:
            self_test()
            return 0
        needed = ["base", "client_id", "key", "other_client_id", "other_key", "decide_cmd"]
        absent = [f"--{n.replace('_', '-')}" for n in needed if not getattr(args, n)]
        if absent:
            parser.error("missing " + ", ".join(absent))
        Run(args).all()
    except CheckFailed as failed:
        print(f"FAIL {failed}", file=sys.stderr, flush=True)
        return 1
    except requests.RequestException as failed:
        print(f"FAIL the server could not be reached: {failed}", file=sys.stderr, flush=True)
        return 1
    print("all FHIR end-to-end checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
