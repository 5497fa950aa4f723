//! FSPIOP JWS: signing outbound requests and verifying inbound ones with the
//! `FSPIOP-Signature`, `FSPIOP-URI` and `FSPIOP-HTTP-Method` headers (FSPIOP
//! Signature v1.1), interoperable with Mojaloop's reference implementation,
//! `Jws.signer` and `Jws.validator` of `@mojaloop/sdk-standard-components`,
//! which is what Mojaloop's SDKs and test tools run. Where the spec and the
//! reference differ, this follows the reference.
//!
//! # The message
//! A JWS (RFC 7515) whose payload is the request body and whose protected
//! header carries the request's FSPIOP headers, with these members in this
//! order (the reference's, which the signature covers byte for byte):
//!
//! ```text
//! {"alg":"RS256"|"ES256","FSPIOP-URI":..,"FSPIOP-HTTP-Method":..,"FSPIOP-Source":..
//!  [,"FSPIOP-Destination":..][,"Date":..]}
//! ```
//!
//! `FSPIOP-Destination` and `Date` are protected when the request carries
//! them. `alg` follows the key: RS256 (RSASSA-PKCS1-v1_5, SHA-256) for RSA,
//! ES256 (ECDSA P-256, SHA-256, signature as JOSE's 64-byte `r || s`) for EC.
//! The header `FSPIOP-Signature` is the JSON text
//! `{"protectedHeader":"<BASE64URL(header)>","signature":"<BASE64URL(sig)>"}`;
//! `FSPIOP-URI` and `FSPIOP-HTTP-Method` are sent as headers too, with the
//! values protected. (The spec lists RS256, RS384 and RS512; the reference
//! signs and accepts RS256 and ES256, and so does this.)
//!
//! # The payload is the canonical body, not the bytes received
//! The reference signer signs `safe-stable-stringify(body)` and sends that
//! text. Its validator does not verify the bytes it received: it verifies
//! `safe-stable-stringify(JSON.parse(body))`, the body re-serialised with
//! object keys sorted (by UTF-16 code units), no whitespace, strings escaped
//! and numbers written as JavaScript does (`1.0` → `1`, `1e21` → `1e+21`).
//! So, to interoperate:
//! - [`Signer::sign`] canonicalises the body, signs that, and returns it in
//!   [`SignedRequest::body`]: the caller sends those bytes (which also
//!   verify under the spec's reading, "the payload is the body").
//! - [`Verifier::verify`] canonicalises the received body the same way and
//!   verifies that. It therefore accepts a body reformatted in transit
//!   (whitespace, key order, number spelling) as long as its JSON value is
//!   unchanged, like the reference, and rejects, like the reference, a
//!   sender that signed non-canonical bytes (pretty-printed, keys unsorted)
//!   even though its signature over the bytes sent is right.
//!
//! The canonical form here is exact for the JSON `serde_json` parses:
//! numbers go through `f64` as in JavaScript (so integers beyond 2^53 are
//! rounded as there), which needs `serde_json`'s `float_roundtrip` feature:
//! without it a decimal with many significant digits can parse one ulp away
//! from JavaScript's value (a test here catches that). Bodies `serde_json`
//! refuses and `JSON.parse` takes (unpaired surrogate escapes, nesting
//! deeper than 128, numbers beyond `f64`) are rejected as
//! [`JwsError::Malformed`]. FSPIOP bodies carry amounts as strings, so none
//! of this arises in practice.
//!
//! # What verification checks, in the reference's order
//! 1. A body whose JSON value is truthy (not `null`, `false`, `0`, `""`).
//! 2. `FSPIOP-Source`, then `FSPIOP-Signature`, `FSPIOP-URI` and
//!    `FSPIOP-HTTP-Method` present (an empty value counts as absent). The
//!    reference picks the public key by `FSPIOP-Source` at this point: pick
//!    the [`Verifier`] by it.
//! 3. `FSPIOP-Signature` is JSON with `protectedHeader` and `signature`
//!    strings in base64url, the protected header decodes to a JSON object.
//! 4. `alg` is that of the key (`RS256` with an RSA key, `ES256` with P-256).
//! 5. The signature over `protectedHeader || "." || BASE64URL(payload)`.
//! 6. The protected header against the HTTP headers, by exact string
//!    comparison: `FSPIOP-URI`, `FSPIOP-HTTP-Method` and `FSPIOP-Source` must
//!    be protected and equal; a protected `Date` must equal the `Date`
//!    header; `FSPIOP-Destination` must be protected if and only if the
//!    header is present, and then equal.
//!
//! Like the reference, this compares `FSPIOP-URI` and `FSPIOP-HTTP-Method`
//! with their headers, not with the request line, and does not check the
//! `Date` for freshness; a caller that wants either checks it itself.
//!
//! # Departures from the reference, on purpose
//! - The reference chooses `alg` from the PEM's label (ES256 only for
//!   `BEGIN EC PRIVATE KEY`), so with a PKCS#8 EC key (`BEGIN PRIVATE KEY`)
//!   it sends an ECDSA signature labelled RS256, which no validator accepts.
//!   Here `alg` follows the key itself.
//! - The reference verifies with the `jsonwebtoken` package, which treats a
//!   top-level body member `exp` or `nbf` as a JWT claim (rejecting it when
//!   expired, not yet valid or not a number). FSPIOP bodies have no such
//!   members; this is not reproduced.
//! - RSA keys must have 2048 to 4096 bits to sign and 2048 to 8192 to verify
//!   (`ring`'s limits; the spec asks for at least 2048), where the reference
//!   takes any size. EC keys must be on P-256.
//! - The reference encodes and decodes the protected header as Latin-1, not
//!   as UTF-8 (RFC 7515); the signer here refuses a protected value that is
//!   not printable ASCII, where the two agree, and the verifier decodes as
//!   Latin-1 like the reference.

use std::fmt;

use axum::http::HeaderMap;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use serde_json::{Map, Value};

use super::js;

/// The `FSPIOP-Signature` header (HTTP header names are case-insensitive;
/// these are lower case, as HTTP/2 and Node write them).
pub const SIGNATURE: &str = "fspiop-signature";
/// The `FSPIOP-URI` header.
pub const URI: &str = "fspiop-uri";
/// The `FSPIOP-HTTP-Method` header.
pub const HTTP_METHOD: &str = "fspiop-http-method";
const SOURCE: &str = "fspiop-source";
const DESTINATION: &str = "fspiop-destination";
const DATE: &str = "date";

/// Base64url without padding, as JWS writes it.
const BASE64URL: GeneralPurpose = URL_SAFE_NO_PAD;

/// Base64url as the reference reads it: no padding (its JWS syntax check
/// refuses `=`), and non-zero unused bits in the last character tolerated
/// (Node's decoder ignores them).
const BASE64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// The resource names of the reference's `uriRegex`, which decides where
/// `FSPIOP-URI` starts in a request URL (see [`fspiop_uri`]).
const RESOURCES: [&str; 13] = [
    "participants",
    "parties",
    "quotes",
    "bulkQuotes",
    "transfers",
    "bulkTransfers",
    "transactionRequests",
    "thirdpartyRequests",
    "authorizations",
    "consents",
    "consentRequests",
    "fxQuotes",
    "fxTransfers",
];

/// A JWS algorithm FSPIOP signatures use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, for RSA keys.
    Rs256,
    /// ECDSA on P-256 with SHA-256, for EC keys.
    Es256,
}

impl Alg {
    /// The JWS name, as in the protected header's `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request header that the signature protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FspiopHeader {
    Uri,
    HttpMethod,
    Source,
    Destination,
    Date,
}

impl FspiopHeader {
    /// The member's name in the protected header (case-sensitive there).
    pub fn name(self) -> &'static str {
        match self {
            FspiopHeader::Uri => "FSPIOP-URI",
            FspiopHeader::HttpMethod => "FSPIOP-HTTP-Method",
            FspiopHeader::Source => "FSPIOP-Source",
            FspiopHeader::Destination => "FSPIOP-Destination",
            FspiopHeader::Date => "Date",
        }
    }
}

impl fmt::Display for FspiopHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request could not be signed or its signature not be verified.
/// Every verification error means that the request does not carry a valid
/// signature (FSPIOP error 3105, "Invalid signature"); `MissingSignature`
/// tells an unsigned request apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// The PEM holds no usable key: not PEM, not an RSA or P-256 key, an RSA
    /// modulus of unsupported size, or a key `ring` rejects.
    #[error("unusable JWS key: {0}")]
    BadKey(String),
    /// The signer cannot sign this request: its URL has no FSPIOP resource
    /// path, its body is not JSON, or a protected value is not printable
    /// ASCII.
    #[error("cannot sign the request: {0}")]
    Unsignable(String),
    /// No body, or one whose JSON value is `null`, `false`, `0` or `""`.
    #[error("cannot validate JWS without a body")]
    MissingBody,
    /// The request has no `FSPIOP-Signature` header.
    #[error("the FSPIOP-Signature header is missing")]
    MissingSignature,
    /// `FSPIOP-Source`, `FSPIOP-URI` or `FSPIOP-HTTP-Method` is missing.
    #[error("the {0} header, required for JWS, is missing")]
    MissingHeader(FspiopHeader),
    /// `FSPIOP-Signature`, its protected header or the body cannot be read.
    #[error("malformed JWS: {0}")]
    Malformed(String),
    /// The protected header's `alg` is absent, unknown, or not that of the
    /// verifier's key.
    #[error("JWS alg {} is not accepted: the key verifies {expected}", .alg.as_deref().unwrap_or("(none)"))]
    UnsupportedAlg { alg: Option<String>, expected: Alg },
    /// The signature does not verify over the protected header and body.
    #[error("invalid JWS signature")]
    InvalidSignature,
    /// A protected header member and its HTTP header differ, or one of them
    /// is absent where the other is required (`None`).
    #[error(
        "{header}: HTTP header {} does not match protected header {}",
        shown(.http.as_deref()),
        shown(.protected.as_deref())
    )]
    HeaderMismatch { header: FspiopHeader, http: Option<String>, protected: Option<String> },
}

fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "(absent)".to_owned(), |v| format!("{v:?}"))
}

/// What the signer needs of an outbound request.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The HTTP method; upper-cased for the signature.
    pub method: &'a str,
    /// The request URL, absolute or a path (with any query); `FSPIOP-URI`
    /// is cut from it as the reference does (see [`fspiop_uri`]).
    pub url: &'a str,
    /// The `FSPIOP-Source` header.
    pub source: &'a str,
    /// The `FSPIOP-Destination` header, if the request has one.
    pub destination: Option<&'a str>,
    /// The `Date` header exactly as sent, if the request has one.
    pub date: Option<&'a str>,
    /// The JSON body, if any. Requests without a body are not signed.
    pub body: Option<&'a [u8]>,
}

/// A signed request: the headers to add, and the body to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The `FSPIOP-Signature` header.
    pub signature: String,
    /// The `FSPIOP-URI` header.
    pub uri: String,
    /// The `FSPIOP-HTTP-Method` header.
    pub http_method: String,
    /// The body to send instead of the one given: its canonical form (see
    /// the module doc), which is what was signed.
    pub body: Vec<u8>,
}

impl SignedRequest {
    /// The headers to add to the request, with lower-case names.
    pub fn headers(&self) -> [(&'static str, &str); 3] {
        [(SIGNATURE, &self.signature), (URI, &self.uri), (HTTP_METHOD, &self.http_method)]
    }
}

enum SigningKey {
    Rsa(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

/// Signs outbound FSPIOP requests with one private key.
pub struct Signer {
    key: SigningKey,
    rng: SystemRandom,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").field("alg", &self.alg()).finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with the first private key in `pem`: RSA as PKCS#1 (`BEGIN
    /// RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`), or EC on P-256 as
    /// SEC1 (`BEGIN EC PRIVATE KEY`, with its public key, as OpenSSL writes
    /// it) or PKCS#8. Other PEM blocks (`EC PARAMETERS`) are skipped.
    pub fn from_pem(pem: &str) -> Result<Self, JwsError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| bad_key(format!("no private key in the PEM ({e})")))?;
        let rng = SystemRandom::new();
        let rejected = |e: ring::error::KeyRejected| bad_key(format!("rejected by ring: {e}"));
        let key = match &der {
            PrivateKeyDer::Pkcs1(key) => {
                SigningKey::Rsa(RsaKeyPair::from_der(key.secret_pkcs1_der()).map_err(rejected)?)
            }
            PrivateKeyDer::Sec1(key) => SigningKey::Es256(ec_key_from_sec1(key.secret_sec1_der(), &rng)?),
            PrivateKeyDer::Pkcs8(key) => {
                let der = key.secret_pkcs8_der();
                match pkcs8_alg(der)? {
                    Alg::Rs256 => SigningKey::Rsa(RsaKeyPair::from_pkcs8(der).map_err(rejected)?),
                    Alg::Es256 => SigningKey::Es256(
                        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                            .map_err(rejected)?,
                    ),
                }
            }
            _ => return Err(bad_key("unsupported private key format")),
        };
        Ok(Self { key, rng })
    }

    /// The algorithm this signer's key uses.
    pub fn alg(&self) -> Alg {
        match self.key {
            SigningKey::Rsa(_) => Alg::Rs256,
            SigningKey::Es256(_) => Alg::Es256,
        }
    }

    /// Signs a request, or answers `None` for a request without a body
    /// (GET, DELETE), which FSPIOP does not sign: the reference's request
    /// helpers never call its signer for them.
    ///
    /// The caller adds [`SignedRequest::headers`] and sends
    /// [`SignedRequest::body`] as the body.
    pub fn sign(&self, request: &RequestParts<'_>) -> Result<Option<SignedRequest>, JwsError> {
        let Some(body) = request.body.filter(|body| !body.is_empty()) else {
            return Ok(None);
        };
        let uri = fspiop_uri(request.url).ok_or_else(|| {
            JwsError::Unsignable(format!("URI not valid for protected header: {}", request.url))
        })?;
        let body: Value = serde_json::from_slice(body)
            .map_err(|e| JwsError::Unsignable(format!("the body is not JSON: {e}")))?;
        if !js::truthy(&body) {
            return Err(JwsError::Unsignable(format!("the body {body} is an empty JSON value")));
        }
        if request.source.is_empty() {
            return Err(JwsError::Unsignable("FSPIOP-Source is empty".to_owned()));
        }
        let method = request.method.to_ascii_uppercase();
        let members = [
            ("alg", Some(self.alg().as_str())),
            (FspiopHeader::Uri.name(), Some(uri)),
            (FspiopHeader::HttpMethod.name(), Some(method.as_str())),
            (FspiopHeader::Source.name(), Some(request.source)),
            (FspiopHeader::Destination.name(), request.destination.filter(|d| !d.is_empty())),
            (FspiopHeader::Date.name(), request.date.filter(|d| !d.is_empty())),
        ];
        let mut header = String::from("{");
        for (name, value) in members.iter().filter_map(|&(name, value)| Some((name, value?))) {
            if !is_printable_ascii(value) {
                return Err(JwsError::Unsignable(format!("{name} {value:?} is not printable ASCII")));
            }
            if header.len() > 1 {
                header.push(',');
            }
            js::write_string(&mut header, name);
            header.push(':');
            js::write_string(&mut header, value);
        }
        header.push('}');

        // The header is ASCII, so its UTF-8 and the reference's Latin-1
        // encodings agree.
        let protected = BASE64URL.encode(header);
        let payload = js::stable_stringify(&body);
        let signing_input = format!("{protected}.{}", BASE64URL.encode(&payload));
        let signature = BASE64URL.encode(self.sign_bytes(signing_input.as_bytes())?);
        Ok(Some(SignedRequest {
            signature: format!(r#"{{"protectedHeader":"{protected}","signature":"{signature}"}}"#),
            uri: uri.to_owned(),
            http_method: method,
            body: payload.into_bytes(),
        }))
    }

    fn sign_bytes(&self, input: &[u8]) -> Result<Vec<u8>, JwsError> {
        let failed = |_| JwsError::Unsignable("the signing primitive failed".to_owned());
        match &self.key {
            SigningKey::Rsa(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(&signature::RSA_PKCS1_SHA256, &self.rng, input, &mut signature).map_err(failed)?;
                Ok(signature)
            }
            SigningKey::Es256(key) => Ok(key.sign(&self.rng, input).map_err(failed)?.as_ref().to_vec()),
        }
    }
}

/// Verifies the signatures of inbound FSPIOP requests from one participant
/// (one public key).
pub struct Verifier {
    alg: Alg,
    key: UnparsedPublicKey<Vec<u8>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier with the first public key (`BEGIN PUBLIC KEY`, X.509
    /// SubjectPublicKeyInfo) in `pem`: RSA of 2048 to 8192 bits, or EC on
    /// P-256 (uncompressed point).
    pub fn from_pem(pem: &str) -> Result<Self, JwsError> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| bad_key(format!("no public key in the PEM ({e})")))?;
        let (alg, key) = spki_key(spki.as_ref())?;
        let algorithm: &'static dyn signature::VerificationAlgorithm = match alg {
            Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
        };
        Ok(Self { alg, key: UnparsedPublicKey::new(algorithm, key) })
    }

    /// The algorithm this verifier's key verifies.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// Verifies an inbound request's signature: its headers and its body as
    /// received. See the module doc for what is checked.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), JwsError> {
        if body.is_empty() {
            return Err(JwsError::MissingBody);
        }
        let body: Value = serde_json::from_slice(body)
            .map_err(|e| JwsError::Malformed(format!("the body is not JSON: {e}")))?;
        if !js::truthy(&body) {
            return Err(JwsError::MissingBody);
        }

        let source = header_value(headers, SOURCE).ok_or(JwsError::MissingHeader(FspiopHeader::Source))?;
        let signature_header = header_value(headers, SIGNATURE).ok_or(JwsError::MissingSignature)?;
        let uri = header_value(headers, URI).ok_or(JwsError::MissingHeader(FspiopHeader::Uri))?;
        let method =
            header_value(headers, HTTP_METHOD).ok_or(JwsError::MissingHeader(FspiopHeader::HttpMethod))?;

        let (protected, signature) = parse_signature_header(&signature_header)?;
        let claims = decode_protected_header(&protected)?;
        match claims.get("alg") {
            Some(Value::String(alg)) if alg == self.alg.as_str() => {}
            alg => {
                return Err(JwsError::UnsupportedAlg {
                    alg: alg.map(|alg| alg.as_str().map_or_else(|| alg.to_string(), str::to_owned)),
                    expected: self.alg,
                })
            }
        }
        let signature = BASE64URL_LENIENT.decode(&signature).map_err(|_| JwsError::InvalidSignature)?;
        let signing_input = format!("{protected}.{}", BASE64URL.encode(js::stable_stringify(&body)));
        self.key.verify(signing_input.as_bytes(), &signature).map_err(|_| JwsError::InvalidSignature)?;

        let required =
            [(FspiopHeader::Uri, uri), (FspiopHeader::HttpMethod, method), (FspiopHeader::Source, source)];
        for (header, http) in required {
            let protected = protected_member(&claims, header);
            if !agree(protected, Some(&http)) {
                return Err(mismatch(header, Some(&http), protected));
            }
        }
        let date = header_value(headers, DATE);
        let protected_date = protected_member(&claims, FspiopHeader::Date);
        if protected_date.is_some() && !agree(protected_date, date.as_deref()) {
            return Err(mismatch(FspiopHeader::Date, date.as_deref(), protected_date));
        }
        let destination = header_value(headers, DESTINATION);
        let protected_destination = protected_member(&claims, FspiopHeader::Destination);
        if !agree(protected_destination, destination.as_deref()) {
            return Err(mismatch(FspiopHeader::Destination, destination.as_deref(), protected_destination));
        }
        Ok(())
    }
}

/// `FSPIOP-URI` of a request URL as the reference's signer computes it, with
/// the regex `(?:^.*)(\/(participants|parties|…|fxTransfers|)(\/.*)*)$`:
/// the tail of the URL from its last `/` that is followed by a resource name
/// of [`RESOURCES`] (then `/` or the end), by another `/`, or by nothing.
///
/// The greedy prefix makes it the last such slash, with surprises kept here
/// for interoperability: `…/parties/MSISDN/quotes` gives `/quotes`, a URL
/// ending in `/` gives `/`, `http://host/other/path` gives
/// `//host/other/path`, and `/quotes?x=1` (query right after a resource
/// name) gives none. `None` also when the URL holds a line terminator, which
/// the regex's `.` does not match.
fn fspiop_uri(url: &str) -> Option<&str> {
    if url.contains(['\n', '\r', '\u{2028}', '\u{2029}']) {
        return None;
    }
    let starts_here = |rest: &str| {
        rest.is_empty()
            || rest.starts_with('/')
            || RESOURCES.iter().any(|resource| {
                rest.strip_prefix(resource).is_some_and(|tail| tail.is_empty() || tail.starts_with('/'))
            })
    };
    url.rmatch_indices('/').map(|(i, _)| i).find(|&i| starts_here(&url[i + 1..])).map(|i| &url[i..])
}

/// `FSPIOP-Signature`'s `protectedHeader` and `signature`, which must be
/// base64url (the reference's JWS syntax check), the signature non-empty.
fn parse_signature_header(value: &str) -> Result<(String, String), JwsError> {
    let parsed: Value = serde_json::from_str(value)
        .map_err(|e| JwsError::Malformed(format!("FSPIOP-Signature is not JSON: {e}")))?;
    let member = |name: &str| {
        parsed
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| JwsError::Malformed(format!("FSPIOP-Signature has no {name} string")))
    };
    let (protected, signature) = (member("protectedHeader")?, member("signature")?);
    if protected.is_empty() || !is_base64url(protected) {
        return Err(JwsError::Malformed("protectedHeader is not base64url".to_owned()));
    }
    if signature.is_empty() || !is_base64url(signature) {
        return Err(JwsError::Malformed("signature is empty or not base64url".to_owned()));
    }
    Ok((protected.to_owned(), signature.to_owned()))
}

/// The protected header's members. Its bytes are read as Latin-1, as the
/// reference does (`Buffer.toString('binary')`); for the ASCII headers
/// FSPIOP uses that is the same as UTF-8.
fn decode_protected_header(protected: &str) -> Result<Map<String, Value>, JwsError> {
    let bytes = BASE64URL_LENIENT
        .decode(protected)
        .map_err(|e| JwsError::Malformed(format!("protectedHeader is not base64url: {e}")))?;
    let text: String = bytes.iter().copied().map(char::from).collect();
    match serde_json::from_str(&text) {
        Ok(Value::Object(members)) => Ok(members),
        Ok(_) => Err(JwsError::Malformed("the protected header is not a JSON object".to_owned())),
        Err(e) => Err(JwsError::Malformed(format!("the protected header is not JSON: {e}"))),
    }
}

/// A request header as Node hands it to the reference: all its values
/// joined with ", ", bytes read as Latin-1; `None` when absent or empty.
fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|value| value.as_bytes().iter().copied().map(char::from).collect())
        .collect();
    let joined = values.join(", ");
    (!joined.is_empty()).then_some(joined)
}

/// A protected header member, `None` when absent or falsy in JavaScript
/// (the reference tests members with `!`).
fn protected_member(claims: &Map<String, Value>, header: FspiopHeader) -> Option<&Value> {
    claims.get(header.name()).filter(|value| js::truthy(value))
}

/// Whether a protected member and an HTTP header agree: both absent, or both
/// present and the same string.
fn agree(protected: Option<&Value>, http: Option<&str>) -> bool {
    match (protected, http) {
        (None, None) => true,
        (Some(Value::String(protected)), Some(http)) => protected == http,
        _ => false,
    }
}

fn mismatch(header: FspiopHeader, http: Option<&str>, protected: Option<&Value>) -> JwsError {
    JwsError::HeaderMismatch {
        header,
        http: http.map(str::to_owned),
        protected: protected.map(|value| value.as_str().map_or_else(|| value.to_string(), str::to_owned)),
    }
}

fn is_base64url(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_printable_ascii(text: &str) -> bool {
    text.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

// ---------------------------------------------------------------------------
// Keys. `ring` takes RSA keys as PKCS#1 or PKCS#8 and EC keys as PKCS#8 or as
// raw private scalar and public point, and public keys as the bare RSA key or
// EC point. The few DER structures around them are read here (X.690).

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_EXPLICIT_0: u8 = 0xa0;
const TAG_EXPLICIT_1: u8 = 0xa1;

/// rsaEncryption, 1.2.840.113549.1.1.1.
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (P-256), 1.2.840.10045.3.1.7.
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn bad_key(reason: impl Into<String>) -> JwsError {
    JwsError::BadKey(reason.into())
}

/// Reads DER elements one after the other.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The contents of the next element, which must have tag `tag`.
    fn read(&mut self, tag: u8) -> Result<&'a [u8], JwsError> {
        let truncated = || bad_key("truncated DER");
        let (&found, rest) = self.rest.split_first().ok_or_else(truncated)?;
        if found != tag {
            return Err(bad_key(format!("DER tag {found:#04x} where {tag:#04x} was expected")));
        }
        let (&first, mut rest) = rest.split_first().ok_or_else(truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return Err(bad_key("unsupported DER length"));
            }
            let (len, tail) = rest.split_at(count);
            rest = tail;
            len.iter().fold(0, |acc, &b| (acc << 8) | usize::from(b))
        };
        if rest.len() < len {
            return Err(truncated());
        }
        let (contents, tail) = rest.split_at(len);
        self.rest = tail;
        Ok(contents)
    }

    /// The bytes of a BIT STRING without unused bits.
    fn read_bit_string(&mut self) -> Result<&'a [u8], JwsError> {
        match self.read(TAG_BIT_STRING)?.split_first() {
            Some((0, bytes)) => Ok(bytes),
            _ => Err(bad_key("BIT STRING with unused bits")),
        }
    }
}

/// The algorithm of a key's AlgorithmIdentifier (RFC 5280, RFC 5480).
fn key_alg(algorithm_identifier: &[u8]) -> Result<Alg, JwsError> {
    let mut der = Der::new(algorithm_identifier);
    let oid = der.read(TAG_OID)?;
    if oid == OID_RSA_ENCRYPTION {
        return Ok(Alg::Rs256);
    }
    if oid != OID_EC_PUBLIC_KEY {
        return Err(bad_key("neither an RSA nor an EC key"));
    }
    match der.read(TAG_OID) {
        Ok(curve) if curve == OID_P256 => Ok(Alg::Es256),
        Ok(_) => Err(bad_key("an EC key on a curve other than P-256 (prime256v1), which ES256 needs")),
        Err(_) => Err(bad_key("an EC key without a named curve")),
    }
}

/// The algorithm of a PKCS#8 PrivateKeyInfo (RFC 5208).
fn pkcs8_alg(pkcs8: &[u8]) -> Result<Alg, JwsError> {
    let mut info = Der::new(Der::new(pkcs8).read(TAG_SEQUENCE)?);
    info.read(TAG_INTEGER)?; // version
    key_alg(info.read(TAG_SEQUENCE)?)
}

/// An ECDSA key pair from a SEC1 ECPrivateKey (RFC 5915):
/// `SEQUENCE { version INTEGER (1), privateKey OCTET STRING, parameters [0]
/// OID OPTIONAL, publicKey [1] BIT STRING OPTIONAL }`. `ring` reads EC keys
/// only from PKCS#8 (which wraps this structure, and requires the public key
/// in it too), or from the private scalar and the public point, which this
/// extracts; `ring` checks that they belong together on P-256.
fn ec_key_from_sec1(sec1: &[u8], rng: &SystemRandom) -> Result<EcdsaKeyPair, JwsError> {
    let mut key = Der::new(Der::new(sec1).read(TAG_SEQUENCE)?);
    if key.read(TAG_INTEGER)? != [1] {
        return Err(bad_key("SEC1 EC private key of a version other than 1"));
    }
    let private_key = key.read(TAG_OCTET_STRING)?;
    if key.peek_tag() == Some(TAG_EXPLICIT_0) {
        let curve = Der::new(key.read(TAG_EXPLICIT_0)?).read(TAG_OID)?;
        if curve != OID_P256 {
            return Err(bad_key("an EC key on a curve other than P-256 (prime256v1), which ES256 needs"));
        }
    }
    if key.peek_tag() != Some(TAG_EXPLICIT_1) {
        return Err(bad_key("a SEC1 EC private key without its public key"));
    }
    let public_key = Der::new(key.read(TAG_EXPLICIT_1)?).read_bit_string()?;
    EcdsaKeyPair::from_private_key_and_public_key(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        private_key,
        public_key,
        rng,
    )
    .map_err(|e| bad_key(format!("rejected by ring: {e}")))
}

/// The algorithm and key bytes of a SubjectPublicKeyInfo (RFC 5280): for
/// RSA the RSAPublicKey (PKCS#1) DER, for P-256 the uncompressed point.
fn spki_key(spki: &[u8]) -> Result<(Alg, Vec<u8>), JwsError> {
    let mut info = Der::new(Der::new(spki).read(TAG_SEQUENCE)?);
    let alg = key_alg(info.read(TAG_SEQUENCE)?)?;
    let key = info.read_bit_string()?;
    match alg {
        Alg::Rs256 => {
            let mut rsa = Der::new(Der::new(key).read(TAG_SEQUENCE)?);
            let modulus = rsa.read(TAG_INTEGER)?;
            let bits = bit_length(modulus);
            if !(2048..=8192).contains(&bits) {
                return Err(bad_key(format!("an RSA key of {bits} bits (2048 to 8192 are supported)")));
            }
        }
        Alg::Es256 => {
            if key.len() != 65 || key[0] != 0x04 {
                return Err(bad_key("an EC public key that is not an uncompressed P-256 point"));
            }
        }
    }
    Ok((alg, key.to_vec()))
}

/// The bit length of a DER INTEGER's unsigned value.
fn bit_length(integer: &[u8]) -> usize {
    let start = integer.iter().position(|&b| b != 0).unwrap_or(integer.len());
    let magnitude = &integer[start..];
    match magnitude.first() {
        None => 0,
        Some(&top) => magnitude.len() * 8 - top.leading_zeros() as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    // Test keys, made for these tests with OpenSSL 3.0:
    //   openssl genrsa -traditional 2048 > rsa.pem; openssl rsa -pubout < rsa.pem
    //   openssl pkcs8 -topk8 -nocrypt < rsa.pem
    //   openssl ecparam -name prime256v1 -genkey -noout > ec.pem; openssl ec -pubout < ec.pem
    //   openssl pkcs8 -topk8 -nocrypt < ec.pem
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
    /// `openssl ecparam -name secp384r1 -genkey -noout | openssl ec -pubout`
    const EC_P384_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEaMemgecuzIOa5ycOorUzm7ktRAXBhwXe
6DqsERWlj9c9Ij0W24EbQch+fQNknSVBKNPkBGF4S/VjryZURjL/f/8ZJbhubGVz
lu4WHgEVP1qqsad3uu2Ux4nFc6DY8/Bn
-----END PUBLIC KEY-----
";
    /// `openssl genrsa 1024 | openssl rsa -pubout`
    const RSA_1024_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC4kULN87Y+//n4pdE+AtlkP5ZZ
6fOO6qVw4vgoZOBdeYC1QYNclpoV+ySC+dwf9huoGvJKKvM+7dCsJEdtKvLHxkf9
D3EIzz3L3msUPefnyHJODq+oXiMcaDTi76QxIrz5Xc+xbmaYVy7bNm43nN+THUYE
nBwk+Nr4PA8ITP9LaQIDAQAB
-----END PUBLIC KEY-----
";

    // A request signed by the reference, `Jws.signer` of
    // @mojaloop/sdk-standard-components 19.19.1, with RSA_PKCS1 and EC_SEC1
    // (connectors/tests/interop/jws.js, op "sign"): PUT
    // http://switch.example:3000/parties/MSISDN/27713803912 with the headers
    // below and the body REFERENCE_BODY as an object.
    const URL: &str = "http://switch.example:3000/parties/MSISDN/27713803912";
    const SOURCE_FSP: &str = "payeefsp";
    const DESTINATION_FSP: &str = "payerfsp";
    const DATE_SENT: &str = "Tue, 23 May 2017 21:12:31 GMT";
    /// The body as the reference sends it (its canonical form).
    const REFERENCE_BODY: &str = r#"{"party":{"name":"Zoë Smith","partyIdInfo":{"fspId":"payeefsp","partyIdType":"MSISDN","partyIdentifier":"27713803912"},"personalInfo":{"complexName":{"firstName":"Zoë","lastName":"Smith"},"dateOfBirth":"1984-01-01"}}}"#;
    /// The same JSON value, laid out differently.
    const PRETTY_BODY: &str = r#"{
        "party": {
            "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27713803912", "fspId": "payeefsp" },
            "personalInfo": { "dateOfBirth": "1984-01-01", "complexName": { "lastName": "Smith", "firstName": "Zo\u00eb" } },
            "name": "Zoë Smith"
        }
    }"#;
    const REFERENCE_RS256: &str = r#"{"protectedHeader":"eyJhbGciOiJSUzI1NiIsIkZTUElPUC1VUkkiOiIvcGFydGllcy9NU0lTRE4vMjc3MTM4MDM5MTIiLCJGU1BJT1AtSFRUUC1NZXRob2QiOiJQVVQiLCJGU1BJT1AtU291cmNlIjoicGF5ZWVmc3AiLCJGU1BJT1AtRGVzdGluYXRpb24iOiJwYXllcmZzcCIsIkRhdGUiOiJUdWUsIDIzIE1heSAyMDE3IDIxOjEyOjMxIEdNVCJ9","signature":"fHPBJRrGxOmS402N3SAe75wdIPX9mD_ae2tD8-5ufK0UHl-k_pKLLpOMl1_B6nNhPtaFZE56xSIYrnh4fe2-6_qasoGyx6eTVJ7FMWadZJy-Zil2I8Os9B5TcWVAYR4WacSVpBBhSgmgn7DYzQZ8p9rGm18-AJBPDAe6Ywwm0kcbyNJXbSCXFSWd-etH6FOIzMwvgikUmsU8Roi7s3S3HIHU3qXZN79ctS1QBMtXRlFZl7BudIgf4BViwxzui9cjObvytzfXIrJ_R6ch-RjHmneH4mlFIajTFQV1bohZsNrvb-W5lqlL-UU3u6Aw7oykJvC7jgLwXB4mwGgczrXbjQ"}"#;
    const REFERENCE_ES256: &str = r#"{"protectedHeader":"eyJhbGciOiJFUzI1NiIsIkZTUElPUC1VUkkiOiIvcGFydGllcy9NU0lTRE4vMjc3MTM4MDM5MTIiLCJGU1BJT1AtSFRUUC1NZXRob2QiOiJQVVQiLCJGU1BJT1AtU291cmNlIjoicGF5ZWVmc3AiLCJGU1BJT1AtRGVzdGluYXRpb24iOiJwYXllcmZzcCIsIkRhdGUiOiJUdWUsIDIzIE1heSAyMDE3IDIxOjEyOjMxIEdNVCJ9","signature":"CgQiwi_TMDI0aGP80kio_SnVTCxCBdzLEE2uHN2-eXVhg0qbiNeh-EtPh-utub3OsfoqMJhbjhv8XnKwBAWrjw"}"#;

    fn parts(body: Option<&[u8]>) -> RequestParts<'_> {
        RequestParts {
            method: "put",
            url: URL,
            source: SOURCE_FSP,
            destination: Some(DESTINATION_FSP),
            date: Some(DATE_SENT),
            body,
        }
    }

    /// The headers of a request as received: its FSPIOP headers and the
    /// three a signer added.
    fn received(parts: &RequestParts<'_>, signature: &str, uri: &str, method: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut set = |name: &'static str, value: &str| {
            headers.insert(name, HeaderValue::from_str(value).expect("test header values are ASCII"));
        };
        set(SOURCE, parts.source);
        if let Some(destination) = parts.destination {
            set(DESTINATION, destination);
        }
        if let Some(date) = parts.date {
            set(DATE, date);
        }
        set(SIGNATURE, signature);
        set(URI, uri);
        set(HTTP_METHOD, method);
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers
    }

    fn reference_request(signature: &str) -> HeaderMap {
        received(&parts(None), signature, "/parties/MSISDN/27713803912", "PUT")
    }

    fn sign(signer: &Signer, body: &str) -> (SignedRequest, HeaderMap) {
        let parts = parts(Some(body.as_bytes()));
        let signed = signer.sign(&parts).expect("signs").expect("a request with a body is signed");
        let headers = received(&parts, &signed.signature, &signed.uri, &signed.http_method);
        (signed, headers)
    }

    fn rsa() -> (Signer, Verifier) {
        (Signer::from_pem(RSA_PKCS1).expect("RSA key"), Verifier::from_pem(RSA_PUBLIC).expect("RSA key"))
    }

    fn ec() -> (Signer, Verifier) {
        (Signer::from_pem(EC_SEC1).expect("EC key"), Verifier::from_pem(EC_PUBLIC).expect("EC key"))
    }

    fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
        headers.insert(name, HeaderValue::from_str(value).expect("ASCII"));
    }

    #[test]
    fn reference_signatures_verify() {
        for (signature, verifier) in [(REFERENCE_RS256, rsa().1), (REFERENCE_ES256, ec().1)] {
            let headers = reference_request(signature);
            assert_eq!(verifier.verify(&headers, REFERENCE_BODY.as_bytes()), Ok(()), "{}", verifier.alg());
            // The reference verifies the received body's JSON value, not its
            // bytes: the same value laid out differently verifies too.
            assert_eq!(verifier.verify(&headers, PRETTY_BODY.as_bytes()), Ok(()), "{}", verifier.alg());
            assert_eq!(
                verifier.verify(&headers, REFERENCE_BODY.replace("Smith", "Smyth").as_bytes()),
                Err(JwsError::InvalidSignature)
            );
        }
    }

    #[test]
    fn rs256_signatures_are_those_of_the_reference_byte_for_byte() {
        // RSASSA-PKCS1-v1_5 is deterministic: the same key, headers and body
        // give the reference's exact FSPIOP-Signature.
        for pem in [RSA_PKCS1, RSA_PKCS8] {
            let signer = Signer::from_pem(pem).expect("RSA key");
            assert_eq!(signer.alg(), Alg::Rs256);
            let (signed, _) = sign(&signer, PRETTY_BODY);
            assert_eq!(signed.signature, REFERENCE_RS256);
            assert_eq!(signed.uri, "/parties/MSISDN/27713803912");
            assert_eq!(signed.http_method, "PUT");
            assert_eq!(String::from_utf8(signed.body).expect("UTF-8"), REFERENCE_BODY);
        }
    }

    #[test]
    fn es256_signature_carries_the_reference_protected_header() {
        let (signer, _) = ec();
        let (signed, _) = sign(&signer, PRETTY_BODY);
        let ours: Value = serde_json::from_str(&signed.signature).expect("JSON");
        let theirs: Value = serde_json::from_str(REFERENCE_ES256).expect("JSON");
        assert_eq!(ours["protectedHeader"], theirs["protectedHeader"]);
        assert_eq!(BASE64URL.decode(ours["signature"].as_str().expect("string")).expect("b64").len(), 64);
    }

    #[test]
    fn round_trips() {
        for (signer, verifier) in [
            rsa(),
            ec(),
            (Signer::from_pem(RSA_PKCS8).expect("RSA key"), Verifier::from_pem(RSA_PUBLIC).expect("key")),
            (Signer::from_pem(EC_PKCS8).expect("EC key"), Verifier::from_pem(EC_PUBLIC).expect("EC key")),
        ] {
            assert_eq!(signer.alg(), verifier.alg());
            let (signed, headers) = sign(&signer, PRETTY_BODY);
            assert_eq!(verifier.verify(&headers, &signed.body), Ok(()), "{}", signer.alg());
            assert_eq!(verifier.verify(&headers, PRETTY_BODY.as_bytes()), Ok(()), "{}", signer.alg());
        }
    }

    #[test]
    fn a_tampered_body_has_an_invalid_signature() {
        for (signer, verifier) in [rsa(), ec()] {
            let (signed, headers) = sign(&signer, REFERENCE_BODY);
            let tampered =
                String::from_utf8(signed.body).expect("UTF-8").replace("27713803912", "27713803913");
            assert_eq!(verifier.verify(&headers, tampered.as_bytes()), Err(JwsError::InvalidSignature));
            let (_, other_headers) = sign(&signer, r#"{"party":{}}"#);
            assert_eq!(
                verifier.verify(&other_headers, REFERENCE_BODY.as_bytes()),
                Err(JwsError::InvalidSignature)
            );
        }
    }

    #[test]
    fn a_changed_protected_header_is_named() {
        let (signer, verifier) = rsa();
        let (signed, headers) = sign(&signer, REFERENCE_BODY);
        let changes: [(&'static str, Option<&str>, FspiopHeader); 7] = [
            (URI, Some("/parties/MSISDN/27713803913"), FspiopHeader::Uri),
            (HTTP_METHOD, Some("POST"), FspiopHeader::HttpMethod),
            (SOURCE, Some("otherfsp"), FspiopHeader::Source),
            (DATE, Some("Tue, 23 May 2017 21:12:32 GMT"), FspiopHeader::Date),
            (DATE, None, FspiopHeader::Date),
            (DESTINATION, Some("otherfsp"), FspiopHeader::Destination),
            (DESTINATION, None, FspiopHeader::Destination),
        ];
        for (name, value, header) in changes {
            let mut changed = headers.clone();
            match value {
                Some(value) => set(&mut changed, name, value),
                None => {
                    changed.remove(name);
                }
            }
            match verifier.verify(&changed, &signed.body) {
                Err(JwsError::HeaderMismatch { header: named, http, protected }) => {
                    assert_eq!(named, header);
                    assert_eq!(http.as_deref(), value);
                    assert!(protected.is_some());
                }
                other => panic!("{name}: {value:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn destination_and_date_are_protected_only_when_sent() {
        let (signer, verifier) = ec();
        let parts = RequestParts { destination: None, date: None, ..parts(Some(REFERENCE_BODY.as_bytes())) };
        let signed = signer.sign(&parts).expect("signs").expect("signed");
        let protected: Value = serde_json::from_str(&signed.signature).expect("JSON");
        let protected =
            BASE64URL.decode(protected["protectedHeader"].as_str().expect("string")).expect("b64");
        assert_eq!(
            String::from_utf8(protected).expect("ASCII"),
            r#"{"alg":"ES256","FSPIOP-URI":"/parties/MSISDN/27713803912","FSPIOP-HTTP-Method":"PUT","FSPIOP-Source":"payeefsp"}"#
        );
        let mut headers = received(&parts, &signed.signature, &signed.uri, &signed.http_method);
        assert_eq!(verifier.verify(&headers, &signed.body), Ok(()));
        // An unprotected Date may change; an unprotected FSPIOP-Destination
        // may not be added (the reference's rule).
        set(&mut headers, DATE, DATE_SENT);
        assert_eq!(verifier.verify(&headers, &signed.body), Ok(()));
        set(&mut headers, DESTINATION, DESTINATION_FSP);
        assert_eq!(
            verifier.verify(&headers, &signed.body),
            Err(JwsError::HeaderMismatch {
                header: FspiopHeader::Destination,
                http: Some(DESTINATION_FSP.to_owned()),
                protected: None
            })
        );
    }

    #[test]
    fn requests_without_a_body_are_not_signed() {
        let (signer, _) = rsa();
        let get = RequestParts { method: "GET", url: "/parties/MSISDN/27713803912", ..parts(None) };
        assert_eq!(signer.sign(&get), Ok(None));
        assert_eq!(signer.sign(&RequestParts { body: Some(b""), ..get }), Ok(None));
    }

    #[test]
    fn missing_pieces_are_named() {
        let (signer, verifier) = rsa();
        let (signed, headers) = sign(&signer, REFERENCE_BODY);
        assert_eq!(verifier.verify(&headers, b""), Err(JwsError::MissingBody));
        assert_eq!(verifier.verify(&headers, b"null"), Err(JwsError::MissingBody));
        assert_eq!(verifier.verify(&headers, b"\"\""), Err(JwsError::MissingBody));
        assert!(matches!(verifier.verify(&headers, b"{"), Err(JwsError::Malformed(_))));
        for (name, error) in [
            (SIGNATURE, JwsError::MissingSignature),
            (SOURCE, JwsError::MissingHeader(FspiopHeader::Source)),
            (URI, JwsError::MissingHeader(FspiopHeader::Uri)),
            (HTTP_METHOD, JwsError::MissingHeader(FspiopHeader::HttpMethod)),
        ] {
            let mut missing = headers.clone();
            missing.remove(name);
            assert_eq!(verifier.verify(&missing, &signed.body), Err(error.clone()));
            set(&mut missing, name, "");
            assert_eq!(verifier.verify(&missing, &signed.body), Err(error));
        }
    }

    #[test]
    fn malformed_signature_headers_are_rejected() {
        let (signer, verifier) = rsa();
        let (signed, headers) = sign(&signer, REFERENCE_BODY);
        let parsed: Value = serde_json::from_str(&signed.signature).expect("JSON");
        let protected = parsed["protectedHeader"].as_str().expect("string");
        let signature = parsed["signature"].as_str().expect("string");
        for bad in [
            "not json".to_owned(),
            format!(r#"{{"signature":"{signature}"}}"#),
            format!(r#"{{"protectedHeader":"{protected}","signature":""}}"#),
            format!(r#"{{"protectedHeader":"{protected}=","signature":"{signature}"}}"#),
            format!(r#"{{"protectedHeader":"{protected}","signature":"{signature}="}}"#),
            format!(r#"{{"protectedHeader":"{}","signature":"{signature}"}}"#, BASE64URL.encode("[1]")),
        ] {
            let mut changed = headers.clone();
            set(&mut changed, SIGNATURE, &bad);
            assert!(matches!(verifier.verify(&changed, &signed.body), Err(JwsError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn the_alg_must_be_that_of_the_key() {
        let (rsa_signer, rsa_verifier) = rsa();
        let (ec_signer, ec_verifier) = ec();
        let (signed, headers) = sign(&rsa_signer, REFERENCE_BODY);
        assert_eq!(
            ec_verifier.verify(&headers, &signed.body),
            Err(JwsError::UnsupportedAlg { alg: Some("RS256".to_owned()), expected: Alg::Es256 })
        );
        let (signed, headers) = sign(&ec_signer, REFERENCE_BODY);
        assert_eq!(
            rsa_verifier.verify(&headers, &signed.body),
            Err(JwsError::UnsupportedAlg { alg: Some("ES256".to_owned()), expected: Alg::Rs256 })
        );
        // A header claiming another algorithm (alg "none", "HS256", absent).
        for header in [r#"{"alg":"none"}"#, r#"{"alg":"HS256"}"#, r#"{"FSPIOP-URI":"/quotes"}"#] {
            let mut changed = headers.clone();
            let signature =
                format!(r#"{{"protectedHeader":"{}","signature":"AAAA"}}"#, BASE64URL.encode(header));
            set(&mut changed, SIGNATURE, &signature);
            assert!(
                matches!(rsa_verifier.verify(&changed, &signed.body), Err(JwsError::UnsupportedAlg { .. })),
                "{header}"
            );
        }
    }

    #[test]
    fn unsignable_requests_are_refused() {
        let (signer, _) = ec();
        let body = Some(REFERENCE_BODY.as_bytes());
        for parts in [
            RequestParts { url: "/unknown/1", ..parts(body) },
            RequestParts { url: "/quotes?x=1", ..parts(body) },
            RequestParts { body: Some(b"not json"), ..parts(body) },
            RequestParts { body: Some(b"null"), ..parts(body) },
            RequestParts { source: "", ..parts(body) },
            RequestParts { source: "fsp\u{e9}", ..parts(body) },
        ] {
            assert!(matches!(signer.sign(&parts), Err(JwsError::Unsignable(_))), "{parts:?}");
        }
    }

    #[test]
    fn fspiop_uri_is_cut_as_the_reference_cuts_it() {
        // Expectations computed with the reference's uriRegex in Node.
        for (url, uri) in [
            ("http://switch:3000/parties/MSISDN/123", Some("/parties/MSISDN/123")),
            ("https://h/base/transfers/abc/error", Some("/transfers/abc/error")),
            ("/quotes", Some("/quotes")),
            ("/participants/MSISDN/1?currency=USD", Some("/participants/MSISDN/1?currency=USD")),
            ("/fxQuotes/1", Some("/fxQuotes/1")),
            ("/consentRequests/1/error", Some("/consentRequests/1/error")),
            ("/parties/MSISDN/quotes", Some("/quotes")),
            ("http://h/parties/MSISDN/123/", Some("/")),
            ("http://host/other/path", Some("//host/other/path")),
            ("/a//b", Some("//b")),
            ("/other/path", None),
            ("/partiesX/1", None),
            ("/quotes?x=1", None),
            ("/parties/\n1", None),
            ("quotes", None),
        ] {
            assert_eq!(fspiop_uri(url), uri, "{url:?}");
        }
    }

    #[test]
    fn canonical_json_is_safe_stable_stringify() {
        // Expectation computed with safe-stable-stringify(JSON.parse(raw)) in
        // Node. 123456789012345678901234 needs serde_json's float_roundtrip.
        let raw = r#"{"n":[0,-0,1,-1,1.0,1.5,100,1e21,1e20,123456789012345678901234,0.000001,0.0000001,1.2e-7,5e-324,1.7976931348623157e308,9007199254740993,-12.5e-10,0.1,0.3,2.5e+25,12345678901234567890,3.14159e3,1394865425023536.25],"s":"q\"b\\c\b\f\n\r\t\u0001\u001f\u007f\u2028é😀/","B":{"é":1,"z":2,"a":3,"Z":4,"😀":5,"\uffff":6,"10":7,"9":8}}"#;
        let expected = "{\"B\":{\"10\":7,\"9\":8,\"Z\":4,\"a\":3,\"z\":2,\"é\":1,\"😀\":5,\"\u{ffff}\":6},\"n\":[0,0,1,-1,1,1.5,100,1e+21,100000000000000000000,1.2345678901234569e+23,0.000001,1e-7,1.2e-7,5e-324,1.7976931348623157e+308,9007199254740992,-1.25e-9,0.1,0.3,2.5e+25,12345678901234567000,3141.59,1394865425023536.2],\"s\":\"q\\\"b\\\\c\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}\u{2028}é😀/\"}";
        let value: Value = serde_json::from_str(raw).expect("JSON");
        assert_eq!(js::stable_stringify(&value), expected);
    }

    #[test]
    fn unusable_keys_are_refused() {
        for pem in ["", "not a key", RSA_PUBLIC, EC_PUBLIC] {
            assert!(matches!(Signer::from_pem(pem), Err(JwsError::BadKey(_))), "{pem}");
        }
        for pem in ["", "not a key", RSA_PKCS1, EC_SEC1, EC_P384_PUBLIC, RSA_1024_PUBLIC] {
            assert!(matches!(Verifier::from_pem(pem), Err(JwsError::BadKey(_))), "{pem}");
        }
    }

    #[test]
    fn errors_read_well() {
        let mismatch = JwsError::HeaderMismatch {
            header: FspiopHeader::Uri,
            http: Some("/quotes/2".to_owned()),
            protected: None,
        };
        assert_eq!(
            mismatch.to_string(),
            r#"FSPIOP-URI: HTTP header "/quotes/2" does not match protected header (absent)"#
        );
        let alg = JwsError::UnsupportedAlg { alg: None, expected: Alg::Rs256 };
        assert_eq!(alg.to_string(), "JWS alg (none) is not accepted: the key verifies RS256");
    }
}
