//! FSPIOP JWS (`connectors::fspiop::jws`) against the reference's
//! `Jws.signer` and `Jws.validator`, through `tests/interop/jws.js`: payhub
//! signs and the reference validates, the reference signs and payhub
//! verifies, RS256 and ES256, and tampering is caught on both sides; plus
//! payhub's canonical bodies against `safe-stable-stringify`.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use connectors::fspiop::jws::{Alg, FspiopHeader, JwsError, RequestParts, SignedRequest, Signer, Verifier};
use serde_json::{json, Value};

use super::reference;

// Test keys, made with OpenSSL 3.0 (`openssl genrsa -traditional 2048`,
// `openssl ecparam -name prime256v1 -genkey -noout`, `openssl pkcs8 -topk8
// -nocrypt`, `openssl rsa|ec -pubout`).
const RSA_PKCS1: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEA2av8K8XkuLRqE+sgQLvQ55+qv0jtSJrYBf5bhme324pkZN1J
bXOoA8ZZSBcKTqnSo1YhN8bnRwVB3h++PmDHeWVI7AVcQb0+9vX5dpGEWsztSKye
mwRBbuBKSbSF1wyg18Oo92CIbQnVQuPIZiJm4DiqlWnB8z8lV1sPi5znwh50RhlJ
/fe7ZRFvuhSkcAxRP1nVn6KfCpQ7zra61y7uGGoMAeMmxRnbPZDo03iPPEf89dWW
6hsPvW50OcPK+jJQk7DLk+H3UMB9noDEmDANP+ZczsnWv1X1wf8VdUnmo/E/JPqE
MgmZJyEmk8DU2UTWKU2XiyNCEN/AhVCPjhRClQIDAQABAoIBAAc/Ej1L0H40pV5l
4rQ8/GqlllvZW+rhmsTyT441KDoDDK4N7tqZsdN0WDcN604smaJN5Pu0H7Ft06BH
KsBtXN6l+ExBLm3S1MSIckZX+FHEhja35mzPMrVz+o0jGRyMY1NjhF295TTKEcMx
DZQW25ll0Yn5VBdauA3FLoqNjeqYpLrh64IGavX50TbdHMtbeaxv1iLV+Mw5VKTp
KNq4OT08jW1otYP/wgMWizqCyD9+s6T1mT7T2ubNOdHAplDGwlDuMZZIsJ+JywW/
OuD2GlTtXXUibH2w+EzesYYwuxgzj6PB5I5A+0EeoNY8njnbnWYmEsPf9dRuRswT
bxjuZekCgYEA7vcGb+TFPxWyh6p8FNIYb3crBbfnhBcULhQNLep8dadj6re1Qtdf
O1nh2VdrR54Q5RE72uVOs+mXiLnH3PPWw+W2z6iTv/2eBQTohVVNPtBbVpBj+Wly
gMyQ0H4iD3rrRkypCXKq+FcooUNT5eieAa1NKXFXpe1DHs1sSdQiqS0CgYEA6TBf
VtWIJKv5xN4wJFDcJZzxaDA7g9PVX4OYeeadpeKK6C41LJCtkcw1uej/fdqXSxd3
iThxsGE3Ncbb+g+AS2N+5T8Uu1xa/bbPtBO/e58hJCor06RGMmsIUOOHyei71W42
ZYWMJ2pXZJBKndztq+JaJPJ9hwf+7vGBoVpfkAkCgYEAiJ8oyf5Um02vZYseJ9U6
bTgHm9xZ/BYpznJeWpsOj0GliYOAmXeDFe68hkNJrYd8h0qEGxExHwF1RpFY6EVs
y1FhZHYwCvtYRexZeCmd4UTEg8hHsEgOU/8g6GLE3G7dZrLbjfBGOXezXgedRvvo
onLPg9suTkpJLqopuEgVjP0CgYEAs6vRydY9UAQyLr4D2fdzqIeEegKv2KMfhLig
g0xtq6Mh5EO2NOBE3FG8E8KzGQWUDQfH0rLq5jwBji3q0IGhGHVRENHJ55MBiPuS
je2pXFb/8h2MJ0Yr0C0n+ytVNP1dvNVulEqR8sy9CX8j/v57IjUFv/IXRjOi+fib
KPe5KgECgYBEioywGXc0Pv0+RlzLlMqY8uf3/3JX1AmXyKLLameMmFLt4WG5ektK
eCrGLhKJ1UQf0b9amc6UnTObp3QoWx1uZdAtKEGcQ1aIs6AAQHHpgy552TryXTHL
FH088qMGEJP3p1ZbZk+/5lPDcr6wndlarIxJGPnpbEbeFAjpLErR8A==
-----END RSA PRIVATE KEY-----
";
const RSA_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDZq/wrxeS4tGoT
6yBAu9Dnn6q/SO1ImtgF/luGZ7fbimRk3Ultc6gDxllIFwpOqdKjViE3xudHBUHe
H74+YMd5ZUjsBVxBvT729fl2kYRazO1IrJ6bBEFu4EpJtIXXDKDXw6j3YIhtCdVC
48hmImbgOKqVacHzPyVXWw+LnOfCHnRGGUn997tlEW+6FKRwDFE/WdWfop8KlDvO
trrXLu4YagwB4ybFGds9kOjTeI88R/z11ZbqGw+9bnQ5w8r6MlCTsMuT4fdQwH2e
gMSYMA0/5lzOyda/VfXB/xV1Seaj8T8k+oQyCZknISaTwNTZRNYpTZeLI0IQ38CF
UI+OFEKVAgMBAAECggEABz8SPUvQfjSlXmXitDz8aqWWW9lb6uGaxPJPjjUoOgMM
rg3u2pmx03RYNw3rTiyZok3k+7QfsW3ToEcqwG1c3qX4TEEubdLUxIhyRlf4UcSG
NrfmbM8ytXP6jSMZHIxjU2OEXb3lNMoRwzENlBbbmWXRiflUF1q4DcUuio2N6pik
uuHrggZq9fnRNt0cy1t5rG/WItX4zDlUpOko2rg5PTyNbWi1g//CAxaLOoLIP36z
pPWZPtPa5s050cCmUMbCUO4xlkiwn4nLBb864PYaVO1ddSJsfbD4TN6xhjC7GDOP
o8HkjkD7QR6g1jyeOdudZiYSw9/11G5GzBNvGO5l6QKBgQDu9wZv5MU/FbKHqnwU
0hhvdysFt+eEFxQuFA0t6nx1p2Pqt7VC1187WeHZV2tHnhDlETva5U6z6ZeIucfc
89bD5bbPqJO//Z4FBOiFVU0+0FtWkGP5aXKAzJDQfiIPeutGTKkJcqr4VyihQ1Pl
6J4BrU0pcVel7UMezWxJ1CKpLQKBgQDpMF9W1Ygkq/nE3jAkUNwlnPFoMDuD09Vf
g5h55p2l4oroLjUskK2RzDW56P992pdLF3eJOHGwYTc1xtv6D4BLY37lPxS7XFr9
ts+0E797nyEkKivTpEYyawhQ44fJ6LvVbjZlhYwnaldkkEqd3O2r4lok8n2HB/7u
8YGhWl+QCQKBgQCInyjJ/lSbTa9lix4n1TptOAeb3Fn8FinOcl5amw6PQaWJg4CZ
d4MV7ryGQ0mth3yHSoQbETEfAXVGkVjoRWzLUWFkdjAK+1hF7Fl4KZ3hRMSDyEew
SA5T/yDoYsTcbt1mstuN8EY5d7NeB51G++iics+D2y5OSkkuqim4SBWM/QKBgQCz
q9HJ1j1QBDIuvgPZ93Ooh4R6Aq/Yox+EuKCDTG2royHkQ7Y04ETcUbwTwrMZBZQN
B8fSsurmPAGOLerQgaEYdVEQ0cnnkwGI+5KN7alcVv/yHYwnRivQLSf7K1U0/V28
1W6USpHyzL0JfyP+/nsiNQW/8hdGM6L5+Jso97kqAQKBgESKjLAZdzQ+/T5GXMuU
ypjy5/f/clfUCZfIostqZ4yYUu3hYbl6S0p4KsYuEonVRB/Rv1qZzpSdM5undChb
HW5l0C0oQZxDVoizoABAcemDLnnZOvJdMcsUfTzyowYQk/enVltmT7/mU8NyvrCd
2VqsjEkY+elsRt4UCOksStHw
-----END PRIVATE KEY-----
";
const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA2av8K8XkuLRqE+sgQLvQ
55+qv0jtSJrYBf5bhme324pkZN1JbXOoA8ZZSBcKTqnSo1YhN8bnRwVB3h++PmDH
eWVI7AVcQb0+9vX5dpGEWsztSKyemwRBbuBKSbSF1wyg18Oo92CIbQnVQuPIZiJm
4DiqlWnB8z8lV1sPi5znwh50RhlJ/fe7ZRFvuhSkcAxRP1nVn6KfCpQ7zra61y7u
GGoMAeMmxRnbPZDo03iPPEf89dWW6hsPvW50OcPK+jJQk7DLk+H3UMB9noDEmDAN
P+ZczsnWv1X1wf8VdUnmo/E/JPqEMgmZJyEmk8DU2UTWKU2XiyNCEN/AhVCPjhRC
lQIDAQAB
-----END PUBLIC KEY-----
";
const EC_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIEhQZroYBQt9+i5quhJMtEc3pRmx4NxnAMeSJOwNA9tSoAoGCCqGSM49
AwEHoUQDQgAEeTME/wNZ1b6wAMn5epR+/wgM0r/1TEXYaq+5U/y/gR0Qfg/JEw0f
yWt6XenHqNk4E3JdHh/Je8TSkJ3S2aqdGQ==
-----END EC PRIVATE KEY-----
";
const EC_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSFBmuhgFC336Lmq6
Eky0RzelGbHg3GcAx5Ik7A0D21KhRANCAAR5MwT/A1nVvrAAyfl6lH7/CAzSv/VM
Rdhqr7lT/L+BHRB+D8kTDR/Ja3pd6ceo2TgTcl0eH8l7xNKQndLZqp0Z
-----END PRIVATE KEY-----
";
const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeTME/wNZ1b6wAMn5epR+/wgM0r/1
TEXYaq+5U/y/gR0Qfg/JEw0fyWt6XenHqNk4E3JdHh/Je8TSkJ3S2aqdGQ==
-----END PUBLIC KEY-----
";

const URL: &str = "http://switch.example:3000/transfers/5c2a2f4b-0cb4-4a5c-a8b5-1d7bd8a1e0a9";
const DATE: &str = "Wed, 24 Nov 2027 10:00:00 GMT";

/// A PUT /transfers/{id} callback body, laid out as a Rust serializer might
/// (fields in declaration order, not sorted).
const BODY: &str = r#"{"transferState":"COMMITTED","fulfilment":"mhPUT9ZAwd-BXLfeSd7-YPh46rBWRNBiTCSWjpku90s","completedTimestamp":"2027-11-24T10:00:00.123Z","extensionList":{"extension":[{"key":"note","value":"café ☕ \"quoted\""}]}}"#;

fn parts<'a>(body: &'a [u8], destination: Option<&'a str>) -> RequestParts<'a> {
    RequestParts {
        method: "put",
        url: URL,
        source: "payeefsp",
        destination,
        date: Some(DATE),
        body: Some(body),
    }
}

/// The request headers as JSON for jws.js.
fn header_json(parts: &RequestParts<'_>, signed: &SignedRequest) -> Value {
    let mut headers =
        json!({ "FSPIOP-Source": parts.source, "Date": DATE, "Content-Type": "application/json" });
    if let Some(destination) = parts.destination {
        headers["FSPIOP-Destination"] = json!(destination);
    }
    for (name, value) in signed.headers() {
        headers[name] = json!(value);
    }
    headers
}

fn header_map(headers: &Value) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers.as_object().expect("headers object") {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("header name");
        map.insert(name, HeaderValue::from_str(value.as_str().expect("string")).expect("header value"));
    }
    map
}

fn js_validate(public_key: &str, headers: &Value, raw_body: &str) -> Value {
    reference(
        "jws.js",
        &json!({
            "op": "validate", "publicKey": public_key, "source": "payeefsp", "headers": headers, "rawBody": raw_body,
        }),
    )
}

#[test]
fn payhub_signs_the_reference_validates() {
    for (name, private, public, alg) in [
        ("RSA PKCS#1", RSA_PKCS1, RSA_PUBLIC, Alg::Rs256),
        ("RSA PKCS#8", RSA_PKCS8, RSA_PUBLIC, Alg::Rs256),
        ("EC SEC1", EC_SEC1, EC_PUBLIC, Alg::Es256),
        ("EC PKCS#8", EC_PKCS8, EC_PUBLIC, Alg::Es256),
    ] {
        let signer = Signer::from_pem(private).expect("key");
        assert_eq!(signer.alg(), alg);
        for destination in [Some("payerfsp"), None] {
            let parts = parts(BODY.as_bytes(), destination);
            let signed = signer.sign(&parts).expect("signs").expect("signed");
            let headers = header_json(&parts, &signed);
            let body = String::from_utf8(signed.body.clone()).expect("UTF-8");
            assert_eq!(js_validate(public, &headers, &body), json!({"valid": true}), "{name}");
            // The body as given (not canonical) has the same JSON value.
            assert_eq!(js_validate(public, &headers, BODY), json!({"valid": true}), "{name}");

            let tampered = body.replace("COMMITTED", "ABORTED");
            assert_eq!(
                js_validate(public, &headers, &tampered),
                json!({"valid": false, "error": "invalid signature"}),
                "{name}"
            );
            let mut moved = headers.clone();
            moved["fspiop-uri"] = json!("/transfers/00000000-0000-0000-0000-000000000000");
            let answer = js_validate(public, &moved, &body);
            assert_eq!(answer["valid"], json!(false));
            assert!(answer["error"]
                .as_str()
                .expect("message")
                .starts_with("FSPIOP-URI HTTP request header value"));
        }
    }
}

#[test]
fn the_reference_signs_payhub_verifies() {
    for (name, private, public) in [("RSA", RSA_PKCS1, RSA_PUBLIC), ("EC", EC_SEC1, EC_PUBLIC)] {
        let verifier = Verifier::from_pem(public).expect("key");
        let body: Value = serde_json::from_str(BODY).expect("JSON");
        let signed = reference(
            "jws.js",
            &json!({
                "op": "sign", "key": private, "method": "put", "url": URL,
                "headers": { "fspiop-source": "payeefsp", "fspiop-destination": "payerfsp", "date": DATE },
                "body": body,
            }),
        );
        let headers = header_map(&signed["headers"]);
        let sent = signed["body"].as_str().expect("the signer sends a string body");
        assert_eq!(verifier.verify(&headers, sent.as_bytes()), Ok(()), "{name}");
        assert_eq!(verifier.verify(&headers, BODY.as_bytes()), Ok(()), "{name}");
        assert_eq!(
            verifier.verify(&headers, sent.replace("COMMITTED", "ABORTED").as_bytes()),
            Err(JwsError::InvalidSignature),
            "{name}"
        );
        let mut moved = headers.clone();
        moved.insert("fspiop-http-method", HeaderValue::from_static("POST"));
        assert!(matches!(
            verifier.verify(&moved, sent.as_bytes()),
            Err(JwsError::HeaderMismatch { header: FspiopHeader::HttpMethod, .. })
        ));
        // And the same body re-signed by payhub gives the same body bytes.
        let ours = Signer::from_pem(private).expect("key");
        let mine = ours.sign(&parts(BODY.as_bytes(), Some("payerfsp"))).expect("signs").expect("signed");
        assert_eq!(mine.body, sent.as_bytes());
        assert_eq!(mine.uri, signed["headers"]["fspiop-uri"].as_str().expect("uri"));
        if name == "RSA" {
            assert_eq!(mine.signature, signed["headers"]["fspiop-signature"].as_str().expect("signature"));
        }
    }
}

#[test]
fn bodiless_requests_are_signed_by_neither() {
    let signed = reference(
        "jws.js",
        &json!({
            "op": "sign", "key": RSA_PKCS1, "method": "GET", "url": "http://als/parties/MSISDN/123",
            "headers": { "fspiop-source": "payeefsp", "date": DATE }, "body": null,
        }),
    );
    assert!(signed["headers"].get("fspiop-signature").is_none());
    let signer = Signer::from_pem(RSA_PKCS1).expect("key");
    let get = RequestParts { method: "GET", body: None, ..parts(b"", None) };
    assert_eq!(signer.sign(&get), Ok(None));
}

#[test]
fn a_pkcs8_ec_key_breaks_the_reference_signer() {
    // The reference picks RS256 unless the PEM says "BEGIN EC ": with a
    // PKCS#8 EC key it labels an ECDSA signature RS256. Neither validator
    // accepts that; payhub's signer uses ES256 for the same key.
    let body: Value = serde_json::from_str(BODY).expect("JSON");
    let signed = reference(
        "jws.js",
        &json!({
            "op": "sign", "key": EC_PKCS8, "method": "put", "url": URL,
            "headers": { "fspiop-source": "payeefsp", "date": DATE }, "body": body,
        }),
    );
    let headers = header_map(&signed["headers"]);
    let sent = signed["body"].as_str().expect("body");
    let verifier = Verifier::from_pem(EC_PUBLIC).expect("key");
    assert_eq!(
        verifier.verify(&headers, sent.as_bytes()),
        Err(JwsError::UnsupportedAlg { alg: Some("RS256".to_owned()), expected: Alg::Es256 })
    );
    let answer = js_validate(EC_PUBLIC, &signed["headers"], sent);
    assert_eq!(answer["valid"], json!(false), "{answer}");
}

/// A small deterministic generator (xorshift64*), to vary numbers.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn canonical_bodies_are_those_of_safe_stable_stringify() {
    // Numbers of every magnitude (random bit patterns, written both ways by
    // Rust), long decimal literals, big integers; strings with escapes;
    // keys whose UTF-16 and UTF-8 orders differ.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut numbers = Vec::new();
    for _ in 0..3000 {
        let x = f64::from_bits(rng.next());
        if x.is_finite() {
            numbers.push(format!("{x:e}"));
            numbers.push(format!("{x}"));
        }
        let digits: String =
            (0..rng.next() % 25).map(|_| char::from(b'0' + (rng.next() % 10) as u8)).collect();
        let exponent = (rng.next() % 80) as i64 - 40;
        numbers.push(format!("-{}{digits}e{exponent}", rng.next() % 9 + 1));
        numbers.push(format!("{}", rng.next() >> (rng.next() % 64)));
    }
    let raw = format!(
        r#"{{"z":[{}],"strings":["\u0000\u001f\u007f\u0080\u2028\u2029\ud83d\ude00","tab\there","é","😀"],"keys":{{"b":1,"B":2,"ä":3,"😀":4,"\uffff":5,"":6}}}}"#,
        numbers.join(",")
    );
    let theirs = reference("jws.js", &json!({ "op": "stringify", "rawBody": raw }));
    let theirs = theirs["payload"].as_str().expect("payload");
    let signer = Signer::from_pem(EC_SEC1).expect("key");
    let signed = signer.sign(&parts(raw.as_bytes(), None)).expect("signs").expect("signed");
    let ours = String::from_utf8(signed.body).expect("UTF-8");
    // The first differing element first, for a readable failure.
    for (a, b) in ours.split(',').zip(theirs.split(',')) {
        assert_eq!(a, b);
    }
    assert_eq!(ours, theirs);
}
