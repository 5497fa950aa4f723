//! Mutual TLS on the FSPIOP surface, with JWS on as well: the demo tenants
//! pay each other through the switch simulator over TLS listeners that ask
//! every client for a certificate of the scheme's CA (each tenant presents
//! its own, the simulator its `switch` one), a tampered body is refused with
//! 3105, and a client without a certificate of that CA gets no answer at
//! all. The certificates are made for the test (rcgen).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::jws::{jws_toml, post_quote, signed_quote};
use crate::node::{free_port, transfer_body, Node, TENANT_BLUE, TENANT_GREEN};

/// A certificate authority of the test, and what it issues into `dir`.
struct Authority {
    certificate: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
    name: String,
}

impl Authority {
    fn new(dir: &Path, name: &str) -> Authority {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let certificate = params.self_signed(&key).expect("self-signed CA");
        let authority = Authority { certificate, key, dir: dir.to_owned(), name: name.to_owned() };
        std::fs::write(authority.ca_path(), authority.certificate.pem()).expect("write the CA certificate");
        authority
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// Issues a certificate for `subject` (server: for 127.0.0.1 and
    /// localhost; client: for the name) and writes it and its key: answers
    /// their paths.
    fn issue(&self, subject: &str, purpose: ExtendedKeyUsagePurpose) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let names = match purpose {
            ExtendedKeyUsagePurpose::ServerAuth => vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            _ => vec![subject.to_owned()],
        };
        let mut params = CertificateParams::new(names).expect("parameters");
        params.distinguished_name.push(DnType::CommonName, subject);
        params.extended_key_usages = vec![purpose];
        let certificate = params.signed_by(&key, &self.certificate, &self.key).expect("issue");
        let cert = self.dir.join(format!("{}-{subject}.pem", self.name));
        let private = self.dir.join(format!("{}-{subject}.key", self.name));
        std::fs::write(&cert, certificate.pem()).expect("write the certificate");
        std::fs::write(&private, key.serialize_pem()).expect("write the key");
        (cert, private)
    }

    /// An HTTP client presenting `subject`'s certificate (when given) and
    /// trusting `trusted`'s.
    fn client(&self, subject: Option<&str>, trusted: &Authority) -> reqwest::Client {
        let ca = std::fs::read(trusted.ca_path()).expect("read the CA");
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA certificate"))
            .timeout(Duration::from_secs(20));
        if let Some(subject) = subject {
            let (cert, key) = self.issue(subject, ExtendedKeyUsagePurpose::ClientAuth);
            let mut pem = std::fs::read(cert).expect("read the certificate");
            pem.extend(std::fs::read(key).expect("read the key"));
            builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
        }
        builder.build().expect("client")
    }
}

fn path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mtls_and_jws_on_the_demo_tenants_pay_each_other_and_strangers_get_no_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheme = Authority::new(dir.path(), "scheme");
    let (server_cert, server_key) = scheme.issue("payhub", ExtendedKeyUsagePurpose::ServerAuth);
    let client_certs: Vec<String> = ["bluebank", "greenbank", "switch"]
        .iter()
        .map(|fsp| {
            let (cert, key) = scheme.issue(fsp, ExtendedKeyUsagePurpose::ClientAuth);
            format!("{fsp} = {{ cert = \"{}\", key = \"{}\" }}", path(&cert), path(&key))
        })
        .collect();
    let tls_listen = free_port();
    let config = dir.path().join("mtls.toml");
    std::fs::write(
        &config,
        format!(
            "{jws}\n[fspiop.tls]\nlisten = \"{tls_listen}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\
             client_ca = \"{ca}\"\nca = \"{ca}\"\nclient_certs = {{ {certs} }}\n",
            jws = jws_toml(),
            cert = path(&server_cert),
            key = path(&server_key),
            ca = path(&scheme.ca_path()),
            certs = client_certs.join(", "),
        ),
    )
    .expect("write the configuration");
    let node =
        Node::start_with(&["demo", "--config", &path(&config)], free_port(), &dir.path().join("node")).await;

    // A payment: every FSPIOP hop (the tenants to the simulator, the
    // simulator to the tenants) over mutual TLS, signed.
    let body = transfer_body("27710000001", "27710000006", "10.00", "USD");
    let transfer = node.pay(TENANT_BLUE, "mtls-1", &body).await;
    assert_eq!(transfer["transferState"], "COMMITTED", "{transfer}\n{}", node.log_text());
    assert_eq!(node.balance(TENANT_BLUE, "27710000001").await["balance"], "990.00");
    assert_eq!(node.balance(TENANT_GREEN, "27710000006").await["balance"], "1010.00");

    // A client with the scheme's certificate: heard; a signed quote is
    // accepted and a tampered one refused with 3105.
    let base = format!("https://{tls_listen}/fspiop/greenbank/quotes");
    let member = scheme.client(Some("bluebank-2"), &scheme);
    let (headers, signed) = signed_quote(&uuid::Uuid::new_v4().to_string());
    let (status, answer) =
        post_quote(&member, &base, &headers, signed).await.expect("POST /quotes over mTLS");
    assert_eq!(status, 202, "{answer}");
    let (headers, signed) = signed_quote(&uuid::Uuid::new_v4().to_string());
    let tampered = String::from_utf8(signed).expect("UTF-8").replace(r#""amount":"5""#, r#""amount":"500""#);
    let (status, answer) =
        post_quote(&member, &base, &headers, tampered.into_bytes()).await.expect("POST /quotes over mTLS");
    assert_eq!((status, &answer["errorInformation"]["errorCode"]), (400, &"3105".into()), "{answer}");

    // No client certificate, or one of another CA: the handshake fails.
    let anonymous = scheme.client(None, &scheme);
    let stranger = Authority::new(dir.path(), "stranger").client(Some("bluebank"), &scheme);
    for (who, client) in [("no certificate", anonymous), ("another CA's certificate", stranger)] {
        let (headers, signed) = signed_quote(&uuid::Uuid::new_v4().to_string());
        let result = post_quote(&client, &base, &headers, signed).await;
        assert!(result.is_err(), "a client with {who} was answered: {result:?}");
    }

    // The plain listener no longer serves FSPIOP, nor the simulator.
    let (headers, signed) = signed_quote(&uuid::Uuid::new_v4().to_string());
    let (status, _) = post_quote(&node.http, &node.url("/fspiop/greenbank/quotes"), &headers, signed)
        .await
        .expect("plain POST");
    assert_eq!(status, 404, "FSPIOP is still served in plain HTTP");
    let status =
        node.http.get(node.url("/switch/parties/MSISDN/27710000006")).send().await.expect("GET").status();
    assert_eq!(status, 404, "the switch simulator is still served in plain HTTP");
}
