//! Identity: tokens of a JWKS-configured identity provider work with `iss`, `aud` and
//! `exp` checked; a token signed with the secret that once shipped is refused; a
//! query-string token works on the live route only.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use boardsync::settings::{AuthSettings, IssuerSettings};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};

const ISSUER: &str = "https://login.example.test/";
const AUDIENCE: &str = "boardsync";

/// An identity provider's ES256 key pair: it signs, and its JWKS names the public half.
struct Provider {
    signing: EncodingKey,
    jwks: Value,
}

impl Provider {
    /// The public key as a PEM SubjectPublicKeyInfo, as providers also publish it.
    fn public_pem(&self) -> String {
        use base64::engine::general_purpose::STANDARD;
        let jwk = &self.jwks["keys"][0];
        let coordinate = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
        // The DER header of a P-256 public key, then the uncompressed point.
        let mut der = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
            0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
        ];
        der.extend(coordinate("x"));
        der.extend(coordinate("y"));
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(der))
    }

    fn new(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        // An uncompressed P-256 point: 0x04, then x and y.
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self { signing: EncodingKey::from_ec_der(pkcs8.as_ref()), jwks: json!({ "keys": [jwk] }) }
    }

    fn token(&self, kid: &str, claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_string());
        encode(&header, &claims, &self.signing).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn claims(user: &str, iss: &str, aud: &str, exp: u64) -> Value {
    json!({ "sub": user, "iss": iss, "aud": aud, "exp": exp, "iat": now() })
}

async fn status_with(app: &TestApp, token: &str) -> u16 {
    app.http.get(format!("{}/api/chat/general", app.address)).bearer_auth(token).send().await.unwrap().status().as_u16()
}

#[actix_web::test]
async fn an_identity_provider_s_tokens_work_with_iss_aud_and_exp_checked() {
    let provider = Provider::new("key-1");
    let jwks_file = std::env::temp_dir().join(format!("jwks-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&jwks_file, provider.jwks.to_string()).unwrap();
    let app = spawn_app_with(|settings| {
        settings.auth.issuers = vec![IssuerSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_file: Some(jwks_file.clone()),
            public_key_file: None,
            algorithm: None,
            admin_claim: false,
            user_prefix: "idp:".into(),
        }];
    })
    .await;
    // Members only: the provider's ada is the member "idp:ada".
    app.create_members_only_scope("chat", "general").await;
    assert_eq!(app.set_member(None, "chat", "general", "idp:ada", "viewer").await.status(), 200);
    let hour = now() + 3600;

    assert_eq!(status_with(&app, &provider.token("key-1", claims("ada", ISSUER, AUDIENCE, hour))).await, 200);
    let local_ada = app.http.get(format!("{}/api/chat/general", app.address)).bearer_auth(app.token("ada")).send();
    assert_eq!(local_ada.await.unwrap().status(), 404, "a local token's ada is someone else");
    let mut early = claims("ada", ISSUER, AUDIENCE, hour);
    early["nbf"] = json!(now() + 600);
    let refused = [
        ("another issuer", provider.token("key-1", claims("ada", "https://evil.test/", AUDIENCE, hour))),
        ("another audience", provider.token("key-1", claims("ada", ISSUER, "another-app", hour))),
        ("expired past the leeway", provider.token("key-1", claims("ada", ISSUER, AUDIENCE, now() - 120))),
        ("another key", Provider::new("key-1").token("key-1", claims("ada", ISSUER, AUDIENCE, hour))),
        ("an unknown key id", provider.token("key-9", claims("ada", ISSUER, AUDIENCE, hour))),
        ("not valid before ten minutes from now", provider.token("key-1", early)),
    ];
    for (what, token) in refused {
        assert_eq!(status_with(&app, &token).await, 401, "{what}");
    }
    // The provider's admin claim opens nothing unless the settings trust it.
    let mut admin = claims("ada", ISSUER, AUDIENCE, hour);
    admin["admin"] = json!(true);
    let response =
        app.http.get(format!("{}/api/admin/scopes", app.address)).bearer_auth(provider.token("key-1", admin)).send();
    assert_eq!(response.await.unwrap().status(), 403);
    let _ = std::fs::remove_file(jwks_file);
}

#[actix_web::test]
async fn a_token_signed_with_the_secret_that_once_shipped_is_refused() {
    let app = spawn_app_with(|_| {}).await;
    app.create_scope("chat", "general").await;
    let mut shipped: AuthSettings = app.settings.auth.clone();
    shipped.jwt_secret = "boardsync-local-development-secret-change-me".to_string().into();
    let forged = boardsync::auth::issue_token(&shipped, "mallory", true).unwrap();
    assert_eq!(status_with(&app, &forged).await, 401);
    let response = app.http.get(format!("{}/api/admin/scopes", app.address)).bearer_auth(&forged).send();
    assert_eq!(response.await.unwrap().status(), 401);
}

#[actix_web::test]
async fn a_query_string_token_works_on_the_live_route_only() {
    let app = spawn_app_with(|_| {}).await;
    app.create_scope("chat", "general").await;
    let url = format!("{}/api/chat/general?token={}", app.address, app.token("alice"));
    for url in [url, format!("{}/api/admin/scopes?token={}", app.address, app.admin_token())] {
        let status = app.http.get(&url).send().await.unwrap().status().as_u16();
        assert!(matches!(status, 400 | 401), "{url}: a token in a plain route's URL is not read ({status})");
    }
    // The live route takes it (browsers cannot set headers on a WebSocket).
    app.live("alice", "chat", "general").await;
}

#[actix_web::test]
async fn a_provider_configured_with_a_pem_public_key_works_too() {
    let provider = Provider::new("pem");
    let pem_file = std::env::temp_dir().join(format!("idp-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&pem_file, provider.public_pem()).unwrap();
    let app = spawn_app_with(|settings| {
        settings.auth.issuers = vec![IssuerSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_file: None,
            public_key_file: Some(pem_file.clone()),
            algorithm: Some("ES256".into()),
            admin_claim: true,
            user_prefix: String::new(),
        }];
    })
    .await;
    app.create_scope("chat", "general").await;
    let mut admin = claims("ops", ISSUER, AUDIENCE, now() + 3600);
    assert_eq!(status_with(&app, &provider.token("pem", admin.clone())).await, 200);
    admin["admin"] = json!(true);
    let response =
        app.http.get(format!("{}/api/admin/scopes", app.address)).bearer_auth(provider.token("pem", admin)).send();
    assert_eq!(response.await.unwrap().status(), 200, "a trusted provider's admin claim opens the admin routes");
    let _ = std::fs::remove_file(pem_file);
}
