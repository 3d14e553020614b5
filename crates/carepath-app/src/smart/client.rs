//! The client's side of SMART backend services: an ES384 key pair to register, and
//! the signed assertion a client sends to the token endpoint. The command line uses
//! these so an operator can try the FHIR API with curl; a real client makes its own.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p384::{
    SecretKey,
    elliptic_curve::sec1::ToEncodedPoint,
    pkcs8::{EncodePrivateKey, LineEnding},
};
use serde::Serialize;

use super::MAX_ASSERTION_LIFETIME_SECS;

/// Why a key pair could not be made or an assertion signed.
#[derive(Debug, thiserror::Error)]
pub enum ClientKeyError {
    /// The private key is not a PKCS#8 PEM EC (P-384) or RSA key.
    #[error("not a usable private key: {0}")]
    Key(String),
    /// The lifetime asked for is not between 1 second and 5 minutes.
    #[error("an assertion lives 1 to {MAX_ASSERTION_LIFETIME_SECS} seconds")]
    Lifetime,
}

/// A new client key pair.
#[derive(Debug, Clone)]
pub struct ClientKeys {
    /// The private key, PKCS#8 PEM: the client keeps it secret.
    pub private_pem: String,
    /// The public key as a JSON Web Key Set with `kid` = the key id asked for: what
    /// is registered.
    pub jwks: serde_json::Value,
}

/// Makes an ES384 (P-384) key pair whose public key has the id `kid`.
pub fn generate_es384(kid: &str) -> Result<ClientKeys, ClientKeyError> {
    let secret = SecretKey::random(&mut rand_core::OsRng);
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| ClientKeyError::Key(e.to_string()))?;
    let point = secret.public_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(ClientKeyError::Key(
            "the public key has no coordinates".into(),
        ));
    };
    let b64 = |bytes: &[u8]| base64::Engine::encode(&super::BASE64URL, bytes);
    Ok(ClientKeys {
        private_pem: pem.to_string(),
        jwks: serde_json::json!({
            "keys": [{
                "kty": "EC",
                "crv": "P-384",
                "x": b64(x),
                "y": b64(y),
                "kid": kid,
                "alg": "ES384",
                "use": "sig",
            }]
        }),
    })
}

/// The claims of a client assertion.
#[derive(Debug, Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Signs a client assertion for `client_id` with the PEM private key `key` (P-384
/// signs ES384, RSA signs RS384) under the key id `kid`, for the token endpoint
/// `aud`, valid from `now` for `lifetime` (at most 5 minutes), with a fresh `jti`.
pub fn sign_assertion(
    key: &[u8],
    client_id: &str,
    kid: &str,
    aud: &str,
    now: DateTime<Utc>,
    lifetime: chrono::Duration,
) -> Result<String, ClientKeyError> {
    if lifetime.num_seconds() < 1 || lifetime.num_seconds() > MAX_ASSERTION_LIFETIME_SECS {
        return Err(ClientKeyError::Lifetime);
    }
    let (alg, encoding) = match EncodingKey::from_ec_pem(key) {
        Ok(k) => (Algorithm::ES384, k),
        Err(_) => (
            Algorithm::RS384,
            EncodingKey::from_rsa_pem(key).map_err(|e| ClientKeyError::Key(e.to_string()))?,
        ),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    header.typ = Some("JWT".to_owned());
    let claims = AssertionClaims {
        iss: client_id,
        sub: client_id,
        aud,
        iat: now.timestamp(),
        exp: (now + lifetime).timestamp(),
        jti: uuid::Uuid::now_v7().to_string(),
    };
    jsonwebtoken::encode(&header, &claims, &encoding)
        .map_err(|e| ClientKeyError::Key(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_signs_assertions_its_jwks_verifies() {
        let keys = generate_es384("ehr-1").unwrap();
        let now: DateTime<Utc> = "2026-12-01T12:00:00Z".parse().unwrap();
        let token = sign_assertion(
            keys.private_pem.as_bytes(),
            "ehr-1",
            "ehr-1",
            "http://127.0.0.1:8080/auth/token",
            now,
            chrono::Duration::minutes(5),
        )
        .unwrap();
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(keys.jwks).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(set.find("ehr-1").unwrap()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES384);
        validation.set_audience(&["http://127.0.0.1:8080/auth/token"]);
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
        assert_eq!(data.claims["iss"], "ehr-1");
        assert_eq!(data.header.kid.as_deref(), Some("ehr-1"));
        assert!(matches!(
            sign_assertion(
                keys.private_pem.as_bytes(),
                "ehr-1",
                "ehr-1",
                "aud",
                now,
                chrono::Duration::minutes(6)
            ),
            Err(ClientKeyError::Lifetime)
        ));
    }
}
