//! Starting and stopping a real `payhub demo` process, and a client for it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const TENANT_BLUE: &str = "bluebank";
pub const TENANT_GREEN: &str = "greenbank";

/// A `payhub demo` (or other subcommand) process on a free loopback port.
pub struct Node {
    child: Option<Child>,
    /// The subcommand and its arguments, before `--listen` and `--data-dir`.
    args: Vec<String>,
    /// Extra environment (configuration as `PAYHUB_...` variables).
    env: Vec<(String, String)>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    log: PathBuf,
    pub http: reqwest::Client,
}

pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address")
}

impl Node {
    /// Starts a node on `data_dir` and waits until it is healthy.
    pub async fn start(data_dir: &Path) -> Node {
        Node::start_with(&["demo"], free_port(), data_dir).await
    }

    /// Starts `payhub ARGS --listen LISTEN --data-dir DATA_DIR` and waits
    /// until it is healthy.
    pub async fn start_with(args: &[&str], listen: SocketAddr, data_dir: &Path) -> Node {
        Node::start_with_env(args, &[], listen, data_dir).await
    }

    /// [`Node::start_with`] with extra environment variables.
    pub async fn start_with_env(
        args: &[&str],
        env: &[(&str, &str)],
        listen: SocketAddr,
        data_dir: &Path,
    ) -> Node {
        let mut node = Node {
            child: None,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            listen,
            data_dir: data_dir.to_owned(),
            log: data_dir.with_extension("log"),
            http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("http client"),
        };
        node.spawn().await;
        node
    }

    async fn spawn(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open node log");
        let child = Command::new(env!("CARGO_BIN_EXE_payhub"))
            .args(&self.args)
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("PAYHUB_LOG", "info,openraft=warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start payhub");
        self.child = Some(child);
        self.wait_healthy().await;
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = self.http.get(self.url("/health")).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("payhub exited with {status}; log:\n{}", self.log_text());
                }
            }
            assert!(Instant::now() < deadline, "payhub did not become healthy; log:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown of any kind.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL payhub");
            child.wait().expect("reap payhub");
        }
    }

    /// Starts the node again on the same data dir and port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    /// `POST /channel/transfer`; answers the status and the body.
    pub async fn transfer(&self, tenant: &str, correlation: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url("/channel/transfer"))
            .header("Platform-TenantId", tenant)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(correlation) = correlation {
            request = request.header("X-CorrelationID", correlation);
        }
        let response = request.send().await.expect("POST /channel/transfer");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_transfer(&self, tenant: &str, id: &str) -> Value {
        self.http
            .get(self.url(&format!("/channel/transfer/{id}")))
            .header("Platform-TenantId", tenant)
            .send()
            .await
            .expect("GET /channel/transfer")
            .json()
            .await
            .expect("JSON transfer")
    }

    /// Sends a payment (`POST /channel/transfer`) and waits until it is
    /// COMMITTED or ABORTED: its final state.
    pub async fn pay(&self, tenant: &str, correlation: &str, body: &Value) -> Value {
        let (status, answer) = self.transfer(tenant, Some(correlation), body).await;
        assert_eq!(status, 200, "{answer}");
        let id = answer["transactionId"].as_str().expect("transactionId").to_owned();
        self.wait_final(tenant, &id, Duration::from_secs(30)).await
    }

    /// Polls until the transfer is COMMITTED or ABORTED.
    pub async fn wait_final(&self, tenant: &str, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let transfer = self.get_transfer(tenant, id).await;
            if matches!(transfer["transferState"].as_str(), Some("COMMITTED" | "ABORTED")) {
                return transfer;
            }
            assert!(
                Instant::now() < deadline,
                "transfer {id} not final: {transfer}\nlog:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// All accounts of a tenant: `(msisdn, balance, reserved, incoming)`;
    /// an account with a sub-id is named `msisdn/subId`.
    pub async fn accounts(&self, tenant: &str) -> Vec<(String, String, String, String)> {
        let body: Value = self
            .http
            .get(self.url("/ledger/accounts"))
            .header("Platform-TenantId", tenant)
            .send()
            .await
            .expect("GET /ledger/accounts")
            .json()
            .await
            .expect("JSON accounts");
        body["accounts"]
            .as_array()
            .expect("accounts array")
            .iter()
            .map(|a| {
                let text = |k: &str| a[k].as_str().expect("string field").to_owned();
                let name = match a["partySubIdOrType"].as_str() {
                    Some(sub_id) => format!("{}/{sub_id}", text("partyIdentifier")),
                    None => text("partyIdentifier"),
                };
                (name, text("balance"), text("reserved"), text("incoming"))
            })
            .collect()
    }

    pub async fn balance(&self, tenant: &str, msisdn: &str) -> Value {
        self.http
            .get(self.url(&format!("/ledger/accounts/MSISDN/{msisdn}")))
            .header("Platform-TenantId", tenant)
            .send()
            .await
            .expect("GET balance")
            .json()
            .await
            .expect("JSON balance")
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn transfer_body(payer: &str, payee: &str, amount: &str, currency: &str) -> Value {
    json!({
        "payer": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": payer } },
        "payee": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": payee } },
        "amount": { "amount": amount, "currency": currency },
    })
}
