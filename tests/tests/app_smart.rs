//! SMART backend services without HTTP: `carepath_app::smart::Smart` registering
//! clients and exchanging their signed assertions for scoped tokens, over an
//! embedded or PostgreSQL store with the demo directory.

use carepath_app::{
    AppError, Caller, PageRequest,
    smart::{
        Access, JWT_BEARER, RegisterClient, Smart, TokenError, TokenRequest,
        client::{ClientKeys, generate_es384, sign_assertion},
    },
};
use carepath_core::{Actor, Role};
use carepath_store::{AuditOutcome, AuditQuery};
use carepath_tests::{TestDb, contract_tests, precert::IMAGING_IN, test_start};
use chrono::Duration;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

contract_tests!(
    registration_is_for_admins_and_names_each_bad_field,
    an_assertion_is_exchanged_for_a_scoped_token,
    refused_assertions_say_why,
    a_replayed_assertion_is_refused,
    an_rsa_key_signs_rs384_assertions,
    used_assertion_ids_expire_and_are_purged,
);

const TOKEN_URL: &str = "http://127.0.0.1:8080/auth/token";
/// A well-formed NPI that is not in the demo directory.
const UNKNOWN_NPI: &str = "1234567893";
const SCOPES: &str = "system/Claim.cr system/Subscription.crds";

struct Fixture {
    smart: Smart,
    app: carepath_app::App,
    _keys: tempfile::TempDir,
}

async fn fixture(db: &TestDb) -> Fixture {
    let keys = tempfile::tempdir().expect("temp dir");
    let app = carepath_tests::demo_app(db, &keys).await;
    Fixture {
        smart: Smart::new(app.clone()),
        app,
        _keys: keys,
    }
}

fn admin() -> Caller {
    Caller::new(Actor::new(Role::Admin, "ADM-001").unwrap(), "test:register")
}

fn registration(client_id: &str, jwks: &Value) -> RegisterClient {
    RegisterClient {
        client_id: client_id.into(),
        name: "Imaging center EHR".into(),
        npi: IMAGING_IN.into(),
        jwks: jwks.to_string(),
        scopes: SCOPES.into(),
        active: true,
    }
}

/// Registers an ES384 client `client_id` acting for the imaging provider; its keys.
async fn registered(f: &Fixture, client_id: &str) -> ClientKeys {
    let keys = generate_es384(client_id).unwrap();
    f.smart
        .register_client(&admin(), registration(client_id, &keys.jwks))
        .await
        .expect("registered");
    keys
}

/// A request for `scope` with `assertion`.
fn request(assertion: String, scope: &str) -> TokenRequest {
    TokenRequest {
        grant_type: "client_credentials".into(),
        client_assertion_type: JWT_BEARER.into(),
        client_assertion: assertion,
        scope: scope.into(),
    }
}

/// A five-minute assertion of `client_id` for the token endpoint, signed now.
fn assertion(keys: &ClientKeys, client_id: &str) -> String {
    sign_assertion(
        keys.private_pem.as_bytes(),
        client_id,
        client_id,
        TOKEN_URL,
        test_start(),
        Duration::minutes(5),
    )
    .unwrap()
}

/// An assertion with exactly these claims and header, for the refusals.
fn signed(keys: &ClientKeys, alg: Algorithm, kid: &str, claims: Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(b"a shared secret anyone could know"),
        _ => EncodingKey::from_ec_pem(keys.private_pem.as_bytes()).unwrap(),
    };
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn claims(client_id: &str, aud: &str, exp_in: Duration, jti: &str) -> Value {
    json!({
        "iss": client_id, "sub": client_id, "aud": aud,
        "exp": (test_start() + exp_in).timestamp(), "jti": jti,
    })
}

fn code(result: Result<carepath_app::smart::TokenGrant, TokenError>) -> &'static str {
    match result {
        Ok(_) => "granted",
        Err(e) => e.code(),
    }
}

async fn registration_is_for_admins_and_names_each_bad_field(db: &TestDb) {
    let f = fixture(db).await;
    let keys = generate_es384("ehr-1").unwrap();

    let provider = Caller::new(Actor::new(Role::Provider, IMAGING_IN).unwrap(), "test");
    let refused = f
        .smart
        .register_client(&provider, registration("ehr-1", &keys.jwks))
        .await;
    assert!(matches!(refused, Err(AppError::PermissionDenied(_))));

    let mut bad = registration(
        "ehr 1",
        &json!({ "keys": [{ "kty": "EC", "crv": "P-384" }] }),
    );
    bad.npi = UNKNOWN_NPI.into();
    bad.scopes = "patient/Claim.read".into();
    let Err(AppError::Invalid(invalid)) = f.smart.register_client(&admin(), bad).await else {
        panic!("expected invalid fields");
    };
    let fields: Vec<&str> = invalid
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    for field in [
        "client_id",
        "npi",
        "scopes",
        "jwks.keys[0].kid",
        "jwks.keys[0].x",
    ] {
        assert!(fields.contains(&field), "{field} not named in {fields:?}");
    }
    assert!(
        f.smart
            .list_clients(&admin(), PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing written"
    );

    let client = f
        .smart
        .register_client(&admin(), registration("ehr-1", &keys.jwks))
        .await
        .unwrap();
    assert_eq!(client.npi.as_str(), IMAGING_IN);
    assert_eq!(client.scopes.to_string(), SCOPES);
    assert!(client.active);

    let page = f
        .smart
        .list_clients(&admin(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(page.items, vec![client]);
    assert!(matches!(
        f.smart
            .list_clients(&provider, PageRequest::default())
            .await,
        Err(AppError::PermissionDenied(_))
    ));

    let audit = db
        .store
        .search_audit(&AuditQuery::default(), 0, 100)
        .await
        .unwrap();
    let registrations: Vec<_> = audit
        .iter()
        .filter(|r| r.entry.record_kind == "fhir_client")
        .map(|r| (r.entry.subject.as_str(), r.entry.outcome))
        .collect();
    assert_eq!(
        registrations,
        [
            (IMAGING_IN, AuditOutcome::Denied),
            ("ADM-001", AuditOutcome::Allowed)
        ]
    );
}

async fn an_assertion_is_exchanged_for_a_scoped_token(db: &TestDb) {
    let f = fixture(db).await;
    let keys = registered(&f, "ehr-1").await;

    let grant = f
        .smart
        .exchange(
            request(assertion(&keys, "ehr-1"), "system/Claim.c"),
            TOKEN_URL,
        )
        .await
        .expect("granted");
    assert_eq!(
        (grant.expires_in, grant.scope.as_str()),
        (300, "system/Claim.c")
    );
    let (actor, scopes) = f
        .app
        .auth
        .authenticate_scoped(
            Some(&format!("Bearer {}", grant.access_token)),
            test_start(),
        )
        .unwrap();
    assert_eq!(actor, Actor::new(Role::Provider, IMAGING_IN).unwrap());
    assert!(scopes.allows("Claim", Access::Create));
    assert!(!scopes.allows("Claim", Access::Read));
    assert!(
        f.app
            .auth
            .authenticate(
                Some(&format!("Bearer {}", grant.access_token)),
                test_start()
            )
            .is_err(),
        "a scoped token is not a provider's full token"
    );

    // No scope asked for: every registered one, as registered.
    let all = f
        .smart
        .exchange(request(assertion(&keys, "ehr-1"), ""), TOKEN_URL)
        .await
        .unwrap();
    assert_eq!(all.scope, SCOPES);
    // A version 1 scope the registered ones cover.
    let read = f
        .smart
        .exchange(
            request(assertion(&keys, "ehr-1"), "system/Subscription.read"),
            TOKEN_URL,
        )
        .await
        .unwrap();
    assert_eq!(read.scope, "system/Subscription.read");

    let audit = db
        .store
        .search_audit(
            &AuditQuery {
                subject: Some(IMAGING_IN.into()),
                ..AuditQuery::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    let exchanges = audit
        .iter()
        .filter(|r| r.entry.rpc == carepath_app::smart::TOKEN_OPERATION)
        .filter(|r| r.entry.outcome == AuditOutcome::Allowed && r.entry.record_id == "ehr-1")
        .count();
    assert_eq!(exchanges, 3);
}

async fn refused_assertions_say_why(db: &TestDb) {
    let f = fixture(db).await;
    let keys = registered(&f, "ehr-1").await;
    let exchange = |assertion: String, scope: &'static str| {
        let smart = f.smart.clone();
        async move { code(smart.exchange(request(assertion, scope), TOKEN_URL).await) }
    };
    let five = Duration::minutes(5);

    assert_eq!(exchange(assertion(&keys, "ehr-1"), "").await, "granted");
    let wrong_aud = signed(
        &keys,
        Algorithm::ES384,
        "ehr-1",
        claims("ehr-1", "http://elsewhere/token", five, "a1"),
    );
    assert_eq!(exchange(wrong_aud, "").await, "invalid_client");
    let expired = signed(
        &keys,
        Algorithm::ES384,
        "ehr-1",
        claims("ehr-1", TOKEN_URL, Duration::minutes(-2), "a2"),
    );
    assert_eq!(exchange(expired, "").await, "invalid_client");
    let too_long = signed(
        &keys,
        Algorithm::ES384,
        "ehr-1",
        claims("ehr-1", TOKEN_URL, Duration::minutes(10), "a3"),
    );
    assert_eq!(exchange(too_long, "").await, "invalid_client");
    let unknown_kid = signed(
        &keys,
        Algorithm::ES384,
        "other",
        claims("ehr-1", TOKEN_URL, five, "a4"),
    );
    assert_eq!(exchange(unknown_kid, "").await, "invalid_client");
    let hs256 = signed(
        &keys,
        Algorithm::HS256,
        "ehr-1",
        claims("ehr-1", TOKEN_URL, five, "a5"),
    );
    assert_eq!(exchange(hs256, "").await, "invalid_client");
    let mut no_jti = claims("ehr-1", TOKEN_URL, five, "");
    no_jti.as_object_mut().unwrap().remove("jti");
    assert_eq!(
        exchange(signed(&keys, Algorithm::ES384, "ehr-1", no_jti), "").await,
        "invalid_client"
    );
    let other_key = generate_es384("ehr-1").unwrap();
    assert_eq!(
        exchange(assertion(&other_key, "ehr-1"), "").await,
        "invalid_client",
        "bad signature"
    );
    assert_eq!(
        exchange(assertion(&keys, "ehr-1"), "system/Claim.u").await,
        "invalid_scope"
    );
    assert_eq!(
        exchange(assertion(&keys, "ehr-1"), "system/*.read").await,
        "invalid_scope"
    );
    assert_eq!(
        exchange(assertion(&keys, "ehr-1"), "patient/Claim.read").await,
        "invalid_scope"
    );
    assert_eq!(
        exchange(assertion(&keys, "nobody"), "").await,
        "invalid_client"
    );

    let mut wrong_grant = request(assertion(&keys, "ehr-1"), "");
    wrong_grant.grant_type = "authorization_code".into();
    assert_eq!(
        code(f.smart.exchange(wrong_grant, TOKEN_URL).await),
        "unsupported_grant_type"
    );
    let mut wrong_type = request(assertion(&keys, "ehr-1"), "");
    wrong_type.client_assertion_type = "urn:other".into();
    assert_eq!(
        code(f.smart.exchange(wrong_type, TOKEN_URL).await),
        "invalid_request"
    );

    // Disabled: refused, and audited under the client's provider.
    let mut disabled = registration("ehr-1", &keys.jwks);
    disabled.active = false;
    f.smart.register_client(&admin(), disabled).await.unwrap();
    assert_eq!(
        exchange(assertion(&keys, "ehr-1"), "").await,
        "invalid_client"
    );

    let audit = db
        .store
        .search_audit(&AuditQuery::default(), 0, 200)
        .await
        .unwrap();
    let exchanges: Vec<_> = audit
        .iter()
        .filter(|r| r.entry.rpc == carepath_app::smart::TOKEN_OPERATION)
        .map(|r| (r.entry.subject.as_str(), r.entry.outcome))
        .collect();
    assert_eq!(exchanges.len(), 15, "every exchange audited");
    assert_eq!(exchanges[0], (IMAGING_IN, AuditOutcome::Allowed));
    assert_eq!(
        exchanges[1],
        (IMAGING_IN, AuditOutcome::Denied),
        "wrong aud"
    );
    assert_eq!(
        exchanges[5],
        ("anonymous", AuditOutcome::Denied),
        "HS256: no client read"
    );
    assert_eq!(
        exchanges[11],
        ("anonymous", AuditOutcome::Denied),
        "unknown client"
    );
    assert_eq!(
        exchanges[14],
        (IMAGING_IN, AuditOutcome::Denied),
        "disabled client"
    );
}

async fn a_replayed_assertion_is_refused(db: &TestDb) {
    let f = fixture(db).await;
    let keys = registered(&f, "ehr-1").await;
    let once = assertion(&keys, "ehr-1");
    assert!(
        f.smart
            .exchange(request(once.clone(), ""), TOKEN_URL)
            .await
            .is_ok()
    );
    let again = f.smart.exchange(request(once, ""), TOKEN_URL).await;
    assert_eq!(code(again), "invalid_client");
    // Another client may use the same jti: ids are per client.
    let other = registered(&f, "ehr-2").await;
    let same_jti = |k: &ClientKeys, id: &str| {
        signed(
            k,
            Algorithm::ES384,
            id,
            claims(id, TOKEN_URL, Duration::minutes(5), "shared"),
        )
    };
    assert_eq!(
        code(
            f.smart
                .exchange(request(same_jti(&keys, "ehr-1"), ""), TOKEN_URL)
                .await
        ),
        "granted"
    );
    assert_eq!(
        code(
            f.smart
                .exchange(request(same_jti(&other, "ehr-2"), ""), TOKEN_URL)
                .await
        ),
        "granted"
    );
    assert_eq!(
        code(
            f.smart
                .exchange(request(same_jti(&other, "ehr-2"), ""), TOKEN_URL)
                .await
        ),
        "invalid_client"
    );
}

async fn an_rsa_key_signs_rs384_assertions(db: &TestDb) {
    use rsa::{
        RsaPrivateKey,
        pkcs8::{EncodePrivateKey, LineEnding},
        traits::PublicKeyParts,
    };
    let f = fixture(db).await;
    let private = RsaPrivateKey::new(&mut rand_core::OsRng, 2048).expect("rsa key");
    let b64 = |bytes: Vec<u8>| {
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
    };
    let jwks = json!({ "keys": [{
        "kty": "RSA", "kid": "rsa-1", "alg": "RS384",
        "n": b64(private.n().to_bytes_be()), "e": b64(private.e().to_bytes_be()),
    }]});
    let mut req = registration("ehr-rsa", &jwks);
    req.scopes = "system/*.read".into();
    f.smart
        .register_client(&admin(), req)
        .await
        .expect("registered");
    let pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
    let assertion = sign_assertion(
        pem.as_bytes(),
        "ehr-rsa",
        "rsa-1",
        TOKEN_URL,
        test_start(),
        Duration::minutes(4),
    )
    .unwrap();
    let grant = f
        .smart
        .exchange(request(assertion, "system/Claim.rs"), TOKEN_URL)
        .await
        .expect("granted");
    assert_eq!(grant.scope, "system/Claim.rs");

    // An ES384 header on the RSA key is refused.
    let es = generate_es384("rsa-1").unwrap();
    let mismatched = signed(
        &es,
        Algorithm::ES384,
        "rsa-1",
        claims("ehr-rsa", TOKEN_URL, Duration::minutes(5), "m1"),
    );
    assert_eq!(
        code(f.smart.exchange(request(mismatched, ""), TOKEN_URL).await),
        "invalid_client"
    );
}

async fn used_assertion_ids_expire_and_are_purged(db: &TestDb) {
    let t0 = test_start();
    let record = |jti: &'static str, expires: Duration, now: Duration| {
        let store = db.store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let fresh = tx
                .record_client_assertion("ehr-1", jti, t0 + expires, t0 + now)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            fresh
        }
    };
    let minutes = Duration::minutes;
    assert!(record("j1", minutes(1), minutes(0)).await);
    assert!(!record("j1", minutes(1), minutes(0)).await, "a replay");
    assert!(
        record("j1", minutes(3), minutes(2)).await,
        "its first use expired"
    );
    assert!(record("j2", minutes(1), minutes(0)).await);
    // Recording a later id purges the expired ones: j2 recorded again with a time
    // before its expiry is new, because its row is gone.
    assert!(record("j3", minutes(20), minutes(10)).await);
    assert!(record("j2", minutes(1), minutes(0)).await, "purged");
    assert!(
        !record("j3", minutes(20), minutes(0)).await,
        "not expired, kept"
    );
}
