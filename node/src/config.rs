//! The node's one typed configuration: defaults -> TOML file -> `PAYHUB_`
//! environment variables -> command-line flags, then [`Config::validate`].
//!
//! Every option is documented here and in `docs/CONFIGURATION.md`. Nested keys
//! are separated by `__` in environment variables, e.g.
//! `PAYHUB_FLOW__QUOTE_TIMEOUT_MS=5000`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use actors::flow::FlowLimits;
use actors::model::{Currency, Party, PartyIdType, TenantId};
use connectors::fees::FeeRule;
use connectors::fspiop::ilp::IlpVersion;
use connectors::fspiop::jws::{Signer, Verifier};
use connectors::tenants::{Tenant, Tenants};
use rust_decimal::Decimal;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's id in the cluster (non-zero).
    pub node_id: u64,
    /// The zone (data centre) this node runs in.
    pub zone: String,
    /// Address of the HTTP server (channel API, FSPIOP, ledger, metrics).
    pub listen: SocketAddr,
    /// Address of the gRPC server (node-to-node: Raft and forwarding). Used
    /// when `cluster.members` is not empty.
    pub grpc_listen: SocketAddr,
    /// Where the node keeps its RocksDB.
    pub data_dir: PathBuf,
    /// Number of transaction shards (Raft groups besides the metadata group).
    pub shard_count: u32,
    pub raft: RaftSection,
    #[serde(default)]
    pub storage: StorageSection,
    pub cluster: ClusterSection,
    pub flow: FlowSection,
    #[serde(default)]
    pub fspiop: FspiopSection,
    /// Largest accepted HTTP request body.
    pub http_body_bytes_max: usize,
    /// Base URL of the Mojaloop switch every tenant talks to. Empty: the
    /// built-in switch simulator of this node.
    pub switch_url: String,
    /// Run the switch simulator on this node (demo and tests).
    pub switch_simulator: bool,
    /// The switch simulator (`payhub sim` or built in) delivers each
    /// message to a DFSP's next endpoint in turn, as a load balancer in
    /// front of a cluster's nodes would, instead of to the last that
    /// answered.
    #[serde(default)]
    pub simulator_spread: bool,
    /// Base URL of the external AMS API (e.g. `http://127.0.0.1:8090`, as
    /// `payhub sim` serves it). Empty: the built-in ledger of this node,
    /// which only a single node may use.
    pub ams_url: String,
    /// Seed each tenant's ledger with its `demo_parties` (idempotent).
    pub seed_demo_parties: bool,
    pub tenants: Vec<TenantSection>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RaftSection {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub append_entries_max: u64,
    pub snapshot_log_entries_max: u64,
    /// How long a node must have led a group before it hands the group to
    /// its preferred leader (the placement's first replica, once caught up);
    /// 0 never hands over.
    #[serde(default = "default_leader_rebalance_after_ms")]
    pub leader_rebalance_after_ms: u64,
}

/// The node's RocksDB.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Memory for RocksDB's block cache and memtables together (MiB).
    pub memory_mib: usize,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection { memory_mib: storage::StoreOptions::default().memory_mib }
    }
}

/// How the node speaks FSPIOP with the scheme.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FspiopSection {
    /// The scheme's ILP packet format: `v1` (FSPIOP v1.x schemes) or `v4`.
    pub ilp_version: IlpVersion,
    /// Answer transfers to payees `RESERVED` and book them when the switch's
    /// `PATCH /transfers/{id}` confirms them (the scheme must send it);
    /// false: answer `COMMITTED`, the credit booked first.
    pub reserve_notification: bool,
    pub jws: JwsSection,
    pub tls: TlsSection,
}

impl Default for FspiopSection {
    /// Reserve notification on: a payee credit is booked only once the
    /// switch confirms the transfer, so an abort never leaves money to
    /// reconcile (schemes whose switch sends no PATCH turn it off).
    fn default() -> Self {
        FspiopSection {
            ilp_version: IlpVersion::default(),
            reserve_notification: true,
            jws: JwsSection::default(),
            tls: TlsSection::default(),
        }
    }
}

/// FSPIOP message signatures (JWS: `FSPIOP-Signature`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct JwsSection {
    /// Sign every message with a body that a tenant sends, with its key in
    /// `signing_keys`.
    pub sign: bool,
    /// Refuse (3105) an inbound message with a body whose signature does not
    /// verify with its `FSPIOP-Source`'s key in `peer_keys`.
    pub verify: bool,
    /// Private keys (PEM files: RSA for RS256, P-256 EC for ES256) by FSP
    /// id: each tenant's, and `switch` for the switch simulator's own
    /// messages.
    pub signing_keys: BTreeMap<String, PathBuf>,
    /// Public keys (PEM files) by FSP id of every DFSP that sends to this
    /// hub, and of the switch (`switch` for the simulator).
    pub peer_keys: BTreeMap<String, PathBuf>,
}

impl JwsSection {
    /// The signers of `signing_keys` (only when `sign` is on).
    pub fn signers(&self) -> Result<BTreeMap<String, Signer>, ConfigError> {
        if !self.sign {
            return Ok(BTreeMap::new());
        }
        self.signing_keys
            .iter()
            .map(|(fsp, path)| {
                let key = format!("fspiop.jws.signing_keys.{fsp}");
                let pem = std::fs::read_to_string(path)
                    .map_err(|e| invalid(&key, format!("{}: {e}", path.display())))?;
                let signer = Signer::from_pem(&pem).map_err(|e| invalid(&key, e.to_string()))?;
                Ok((fsp.clone(), signer))
            })
            .collect()
    }

    /// The verifiers of `peer_keys` (only when `verify` is on).
    pub fn verifiers(&self) -> Result<Option<BTreeMap<String, Verifier>>, ConfigError> {
        if !self.verify {
            return Ok(None);
        }
        let verifiers = self
            .peer_keys
            .iter()
            .map(|(fsp, path)| {
                let key = format!("fspiop.jws.peer_keys.{fsp}");
                let pem = std::fs::read_to_string(path)
                    .map_err(|e| invalid(&key, format!("{}: {e}", path.display())))?;
                let verifier = Verifier::from_pem(&pem).map_err(|e| invalid(&key, e.to_string()))?;
                Ok((fsp.clone(), verifier))
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Some(verifiers))
    }
}

/// TLS on the FSPIOP surface, mutual (mTLS) as Mojaloop schemes require:
/// the node serves the scheme on a TLS listener of its own that asks every
/// client for a certificate, and presents each tenant's certificate when it
/// calls the switch. See [`crate::tls`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// Serve the FSPIOP endpoints (`/fspiop/...`, and the switch
    /// simulator's `/switch/...`) on this address over TLS, and no longer on
    /// `listen`. Unset: FSPIOP is served on `listen` in plain HTTP.
    pub listen: Option<SocketAddr>,
    /// The listener's certificate chain (PEM, leaf first).
    pub cert: Option<PathBuf>,
    /// The listener's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// CA certificates (PEM) a client's certificate must chain to: mutual
    /// TLS. Unset: clients are not asked for a certificate.
    pub client_ca: Option<PathBuf>,
    /// CA certificates (PEM) the servers this node calls (the switch; the
    /// DFSPs, for the simulator) must present a certificate of, instead of
    /// the public web roots.
    pub ca: Option<PathBuf>,
    /// Client certificates by FSP id: each tenant's for what it sends, and
    /// `switch` for the switch simulator's calls to the DFSPs.
    pub client_certs: BTreeMap<String, CertKey>,
}

/// A certificate chain and its private key (PEM files).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertKey {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn default_leader_rebalance_after_ms() -> u64 {
    10_000
}

/// The cluster this node belongs to. No members: the embedded single node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Replicas of each shard (and of the metadata group).
    pub replication_factor: usize,
    /// The nodes of the cluster, this one included. On the cluster's first
    /// start, the same list on every node: it places the groups. Later the
    /// topology the metadata group records rules (nodes join it), and this
    /// list only says where a joining node finds the cluster.
    pub members: Vec<MemberSection>,
    /// Join a running cluster through `members` instead of starting a new one:
    /// the node is added to the recorded topology and given its share of
    /// replicas and leaders, which the groups' leaders fill. Only read when
    /// the data directory is empty.
    #[serde(default)]
    pub join: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemberSection {
    pub id: u64,
    pub zone: String,
    /// `host:port` of the member's gRPC server.
    pub grpc: String,
    /// `host:port` of the member's HTTP server.
    pub http: String,
}

/// Timeouts and retries of the payer flow (FSPIOP-style expirations).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlowSection {
    pub lookup_timeout_ms: u64,
    pub quote_timeout_ms: u64,
    pub ams_timeout_ms: u64,
    pub transfer_expiry_ms: u64,
    pub transfer_grace_ms: u64,
    pub query_timeout_ms: u64,
    pub retry_count_max: u32,
    /// How long quotes this node gives as payee stay valid.
    pub quote_expiry_ms: u64,
    /// Payments a node drives at once (its live transactions). A new one
    /// beyond it is refused with 503 and Retry-After, so overload shows as
    /// quick, retryable refusals instead of an ever longer queue.
    #[serde(default = "default_in_flight_max")]
    pub in_flight_max: usize,
    /// Requests to pay that may wait on payers at once on this node, either
    /// way: payees' requests waiting for its tenants' payers, and its
    /// tenants' customers' requests waiting for payers elsewhere (each is a
    /// live transaction until the payer decides, pays or it lapses); beyond
    /// it a new one is refused (2003 to a payee's DFSP, 503 to a channel).
    /// They do not count towards `in_flight_max`, so waiting requests never
    /// crowd out payments.
    #[serde(default = "default_requests_awaiting_max")]
    pub requests_awaiting_max: usize,
    /// How long a finished payment (committed or aborted, no operator
    /// needed) stays in the replicated state before it is archived (0:
    /// never). Archived payments are still read by id on the replicas that
    /// archived them, and a repeated request for one is still answered with
    /// it (never paid twice); they no longer weigh on snapshots. At least
    /// `transfer_expiry_ms + transfer_grace_ms`, after which no scheme
    /// message can change a payment.
    #[serde(default = "default_archive_after_ms")]
    pub archive_after_ms: u64,
    /// How often a shard's leader looks for unfinished transactions that
    /// nobody drives (an actor that gave up on a commit during an election,
    /// say) and resumes them. One is an orphan only once it has not changed
    /// for 2 s (`Engine::ORPHAN_QUIET_MS`): the actor of one created just
    /// now may not be registered yet.
    #[serde(default = "default_orphan_sweep_ms")]
    pub orphan_sweep_ms: u64,
}

fn default_orphan_sweep_ms() -> u64 {
    5_000
}

fn default_archive_after_ms() -> u64 {
    300_000
}

fn default_in_flight_max() -> usize {
    256
}

fn default_requests_awaiting_max() -> usize {
    1024
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    pub id: String,
    /// The tenant's DFSP id in the scheme.
    pub fsp_id: String,
    /// Secret for ILP fulfilments on the payee side. Keep it secret.
    pub ilp_secret: String,
    /// The tenant's FSPIOP base URL as the switch should call it. Empty:
    /// `http://{listen}/fspiop/{id}`. Superseded by `endpoints`.
    #[serde(default)]
    pub endpoint: String,
    /// The tenant's FSPIOP base URLs, one per node serving it; the switch
    /// tries the next when one is unreachable. Empty: `endpoint`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Parties to open in the built-in ledger when `seed_demo_parties` is on.
    #[serde(default)]
    pub demo_parties: Vec<DemoParty>,
    /// What the tenant charges as payee (quotes' `payeeFspFee`). None: nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fees: Option<FeeSection>,
}

/// A tenant's fee rule as payee (see `connectors::fees`): `percent` of the
/// amount plus `fixed` by currency; a `SEND` quote takes it from what the
/// payee receives, a `RECEIVE` quote adds it to what the payer sends. It is
/// booked on the tenant's account `ACCOUNT_ID/{account}-{CURRENCY}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeeSection {
    /// Percentage of the amount, as a decimal string ("1.5" is 1.5 %).
    #[serde(default)]
    pub percent: String,
    /// Fixed part by ISO 4217 currency, decimal strings.
    #[serde(default)]
    pub fixed: BTreeMap<String, String>,
    /// Name stem of the fee income accounts.
    #[serde(default = "default_fee_account")]
    pub account: String,
}

fn default_fee_account() -> String {
    connectors::fees::FeeRule::ACCOUNT.to_owned()
}

impl FeeSection {
    /// The rule; the error names what is wrong.
    pub fn rule(&self) -> Result<FeeRule, String> {
        let decimal = |value: &str, what: &str| -> Result<Decimal, String> {
            let parsed: Decimal =
                value.parse().map_err(|_| format!("{what} {value:?} is not a decimal number"))?;
            if parsed.is_sign_negative() {
                return Err(format!("{what} {value:?} is negative"));
            }
            Ok(parsed)
        };
        let percent =
            if self.percent.is_empty() { Decimal::ZERO } else { decimal(&self.percent, "percent")? };
        if percent >= Decimal::ONE_HUNDRED {
            return Err(format!("percent {percent} must be below 100"));
        }
        let fixed = self
            .fixed
            .iter()
            .map(|(currency, value)| {
                let currency: Currency =
                    currency.parse().map_err(|e: actors::model::ModelError| e.to_string())?;
                Ok((currency, decimal(value, &format!("fixed.{currency}"))?))
            })
            .collect::<Result<_, String>>()?;
        Party::new(PartyIdType::AccountId, &format!("{}-USD", self.account))
            .map_err(|e| format!("account: {e}"))?;
        Ok(FeeRule { percent, fixed, account: self.account.clone() })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DemoParty {
    pub id_type: String,
    pub identifier: String,
    /// One of several accounts behind the identifier (FSPIOP
    /// `partySubIdOrType`); the oracle knows the identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_id: Option<String>,
    pub balance: String,
    pub currency: String,
}

/// A configuration value that does not make sense, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), reason: reason.into() }
}

impl Default for Config {
    fn default() -> Self {
        let flow = FlowLimits::default();
        Config {
            node_id: 1,
            zone: "zone-a".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 9080)),
            data_dir: PathBuf::from("payhub-data"),
            shard_count: 8,
            raft: RaftSection {
                // openraft 0.9 gives each AppendEntries one heartbeat
                // interval: past saturation shorter ones time out, are sent
                // again and bring elections (PERFORMANCE.md, change 18).
                heartbeat_interval_ms: 500,
                election_timeout_min_ms: 1_500,
                election_timeout_max_ms: 3_000,
                append_entries_max: 128,
                snapshot_log_entries_max: 20_000,
                leader_rebalance_after_ms: default_leader_rebalance_after_ms(),
            },
            storage: StorageSection::default(),
            fspiop: FspiopSection::default(),
            cluster: ClusterSection { replication_factor: 3, members: Vec::new(), join: false },
            flow: FlowSection {
                lookup_timeout_ms: flow.lookup_timeout_ms,
                quote_timeout_ms: flow.quote_timeout_ms,
                ams_timeout_ms: flow.ams_timeout_ms,
                transfer_expiry_ms: flow.transfer_expiry_ms,
                transfer_grace_ms: flow.transfer_grace_ms,
                query_timeout_ms: flow.query_timeout_ms,
                retry_count_max: flow.retry_count_max,
                quote_expiry_ms: 60_000,
                in_flight_max: default_in_flight_max(),
                requests_awaiting_max: default_requests_awaiting_max(),
                archive_after_ms: default_archive_after_ms(),
                orphan_sweep_ms: default_orphan_sweep_ms(),
            },
            http_body_bytes_max: 64 * 1024,
            switch_url: String::new(),
            switch_simulator: false,
            simulator_spread: false,
            ams_url: String::new(),
            seed_demo_parties: false,
            tenants: Vec::new(),
        }
    }
}

impl Config {
    /// The embedded default: one node, two demo DFSPs and the switch simulator.
    pub fn demo() -> Self {
        let parties = |range: std::ops::RangeInclusive<u64>| {
            range
                .map(|n| DemoParty {
                    id_type: "MSISDN".into(),
                    identifier: format!("2771{n:07}"),
                    sub_id: None,
                    balance: "1000.00".into(),
                    currency: "USD".into(),
                })
                .collect()
        };
        Config {
            switch_simulator: true,
            seed_demo_parties: true,
            tenants: vec![
                TenantSection {
                    id: "bluebank".into(),
                    fsp_id: "bluebank".into(),
                    ilp_secret: "demo-secret-bluebank".into(),
                    endpoint: String::new(),
                    endpoints: Vec::new(),
                    demo_parties: parties(1..=5),
                    fees: None,
                },
                TenantSection {
                    id: "greenbank".into(),
                    fsp_id: "greenbank".into(),
                    ilp_secret: "demo-secret-greenbank".into(),
                    endpoint: String::new(),
                    endpoints: Vec::new(),
                    demo_parties: parties(6..=10),
                    fees: None,
                },
            ],
            ..Config::default()
        }
    }

    /// Layers `base`, the TOML file, the environment and `overrides`, and
    /// validates the result as a node's configuration.
    pub fn load(base: Config, file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let config = Config::layer(base, file, overrides)?;
        config.validate()?;
        Ok(config)
    }

    /// Layers `base`, the TOML file, the environment and `overrides`.
    pub fn layer(base: Config, file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(base));
        if let Some(file) = file {
            if !file.exists() {
                return Err(invalid("--config", format!("file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment
            .merge(Env::prefixed("PAYHUB_").ignore(&["LOG"]).split("__"))
            .merge(Serialized::defaults(overrides));
        figment.extract().map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// Checks the values together; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node_id", "must be greater than zero"));
        }
        if !(1..=raft::slots::SLOT_COUNT).contains(&self.shard_count) {
            return Err(invalid("shard_count", format!("must be between 1 and {}", raft::slots::SLOT_COUNT)));
        }
        if self.storage.memory_mib < 16 {
            return Err(invalid("storage.memory_mib", "must be at least 16"));
        }
        let r = &self.raft;
        if r.heartbeat_interval_ms == 0 || r.election_timeout_min_ms <= r.heartbeat_interval_ms {
            return Err(invalid(
                "raft.election_timeout_min_ms",
                "must exceed raft.heartbeat_interval_ms (> 0)",
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return Err(invalid("raft.election_timeout_max_ms", "must exceed raft.election_timeout_min_ms"));
        }
        let f = &self.flow;
        for (key, value) in [
            ("flow.lookup_timeout_ms", f.lookup_timeout_ms),
            ("flow.quote_timeout_ms", f.quote_timeout_ms),
            ("flow.ams_timeout_ms", f.ams_timeout_ms),
            ("flow.transfer_expiry_ms", f.transfer_expiry_ms),
            ("flow.query_timeout_ms", f.query_timeout_ms),
            ("flow.quote_expiry_ms", f.quote_expiry_ms),
            ("flow.orphan_sweep_ms", f.orphan_sweep_ms),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        if f.archive_after_ms != 0 && f.archive_after_ms < f.transfer_expiry_ms + f.transfer_grace_ms {
            return Err(invalid(
                "flow.archive_after_ms",
                "must be 0 (never) or at least flow.transfer_expiry_ms + flow.transfer_grace_ms",
            ));
        }
        if f.retry_count_max > 100 {
            return Err(invalid("flow.retry_count_max", "at most 100"));
        }
        if !self.cluster.members.is_empty() {
            let member = self.cluster.members.iter().find(|m| m.id == self.node_id);
            let Some(member) = member else {
                return Err(invalid("cluster.members", format!("node_id {} is not listed", self.node_id)));
            };
            if member.zone != self.zone {
                return Err(invalid("zone", format!("differs from cluster.members' zone {:?}", member.zone)));
            }
            // The member's address is how peers reach it; the node may listen
            // on another interface (0.0.0.0), but on the same port.
            let member_port = member.grpc.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok());
            if member_port != Some(self.grpc_listen.port()) {
                return Err(invalid(
                    "grpc_listen",
                    format!("port differs from cluster.members' grpc {:?}", member.grpc),
                ));
            }
            self.placement().map_err(|e| invalid("cluster", e.to_string()))?;
        }
        if self.switch_url.is_empty() && !self.switch_simulator {
            return Err(invalid("switch_url", "set the switch's URL or enable switch_simulator"));
        }
        if !self.ams_url.is_empty() {
            check_url(&self.ams_url).map_err(|reason| invalid("ams_url", reason))?;
        }
        self.validate_tenants()?;
        self.validate_jws()?;
        self.validate_tls()
    }

    /// Checks what `payhub sim` uses: the tenants, each with the URLs of the
    /// nodes serving it (the sim is not one of them).
    pub fn validate_sim(&self) -> Result<(), ConfigError> {
        self.validate_tenants()?;
        for (i, tenant) in self.tenants.iter().enumerate() {
            if tenant.endpoints.is_empty() && tenant.endpoint.is_empty() {
                return Err(invalid(
                    &format!("tenants[{i}].endpoints"),
                    "payhub sim needs the FSPIOP URLs of the nodes serving the tenant",
                ));
            }
        }
        Ok(())
    }

    /// Checks that signing covers every tenant and that its keys load.
    fn validate_jws(&self) -> Result<(), ConfigError> {
        let jws = &self.fspiop.jws;
        if jws.sign {
            for tenant in &self.tenants {
                if !jws.signing_keys.contains_key(&tenant.fsp_id) {
                    return Err(invalid(
                        &format!("fspiop.jws.signing_keys.{}", tenant.fsp_id),
                        "missing: fspiop.jws.sign needs every tenant's key",
                    ));
                }
            }
        }
        if jws.verify && jws.peer_keys.is_empty() {
            return Err(invalid("fspiop.jws.peer_keys", "fspiop.jws.verify needs the peers' public keys"));
        }
        jws.signers()?;
        jws.verifiers()?;
        Ok(())
    }

    /// Checks that the TLS files load and that client certificates, when
    /// any are given, cover every tenant (and the simulator).
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let tls = &self.fspiop.tls;
        if !tls.client_certs.is_empty() {
            let simulator = self.switch_simulator.then_some(connectors::switch::SWITCH_FSP_ID);
            let needed = self.tenants.iter().map(|t| t.fsp_id.as_str()).chain(simulator);
            for fsp in needed {
                if !tls.client_certs.contains_key(fsp) {
                    return Err(invalid(
                        &format!("fspiop.tls.client_certs.{fsp}"),
                        "missing: with client certificates, every tenant (and `switch` for the simulator) needs one",
                    ));
                }
            }
        }
        crate::tls::server_config(tls)?;
        crate::tls::Clients::new(tls)?;
        Ok(())
    }

    /// Checks the tenants.
    fn validate_tenants(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::BTreeSet::new();
        for (i, tenant) in self.tenants.iter().enumerate() {
            TenantId::try_from(tenant.id.clone())
                .map_err(|e| invalid(&format!("tenants[{i}].id"), e.to_string()))?;
            if !seen.insert(tenant.id.clone()) {
                return Err(invalid(&format!("tenants[{i}].id"), "duplicate tenant"));
            }
            if tenant.fsp_id.is_empty() || tenant.fsp_id.len() > 32 {
                return Err(invalid(&format!("tenants[{i}].fsp_id"), "must be 1 to 32 characters"));
            }
            if tenant.ilp_secret.len() < 16 {
                return Err(invalid(&format!("tenants[{i}].ilp_secret"), "must be at least 16 characters"));
            }
            if !tenant.endpoint.is_empty() {
                check_url(&tenant.endpoint).map_err(|r| invalid(&format!("tenants[{i}].endpoint"), r))?;
            }
            if tenant.endpoints.len() > TENANT_ENDPOINTS_MAX {
                return Err(invalid(
                    &format!("tenants[{i}].endpoints"),
                    format!("at most {TENANT_ENDPOINTS_MAX} URLs"),
                ));
            }
            for (j, endpoint) in tenant.endpoints.iter().enumerate() {
                check_url(endpoint).map_err(|r| invalid(&format!("tenants[{i}].endpoints[{j}]"), r))?;
            }
            if let Some(fees) = &tenant.fees {
                fees.rule().map_err(|r| invalid(&format!("tenants[{i}].fees"), r))?;
            }
        }
        if self.tenants.is_empty() {
            return Err(invalid("tenants", "at least one tenant is needed"));
        }
        Ok(())
    }

    pub fn flow_limits(&self) -> FlowLimits {
        let f = &self.flow;
        FlowLimits {
            lookup_timeout_ms: f.lookup_timeout_ms,
            quote_timeout_ms: f.quote_timeout_ms,
            ams_timeout_ms: f.ams_timeout_ms,
            transfer_expiry_ms: f.transfer_expiry_ms,
            transfer_grace_ms: f.transfer_grace_ms,
            query_timeout_ms: f.query_timeout_ms,
            retry_count_max: f.retry_count_max,
        }
    }

    /// The members and the placement of every group. Without configured
    /// members the node is alone: one member, one replica of each group.
    pub fn placement(&self) -> Result<raft::Placement, raft::placement::PlacementError> {
        if self.cluster.members.is_empty() {
            let alone = raft::Member {
                id: actors::model::NodeId(self.node_id),
                zone: self.zone.clone(),
                grpc: self.grpc_listen.to_string(),
                http: self.listen.to_string(),
            };
            return raft::Placement::new(&[alone], 1, self.shard_count);
        }
        let members: Vec<raft::Member> = self
            .cluster
            .members
            .iter()
            .map(|m| raft::Member {
                id: actors::model::NodeId(m.id),
                zone: m.zone.clone(),
                grpc: m.grpc.clone(),
                http: m.http.clone(),
            })
            .collect();
        raft::Placement::new(&members, self.cluster.replication_factor, self.shard_count)
    }

    /// Whether this node is one of several.
    pub fn is_cluster(&self) -> bool {
        self.cluster.members.len() > 1
    }

    /// The URL this node's own HTTP server is reached at.
    pub fn own_url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// The URL this node serves FSPIOP at: its TLS listener if it has one.
    pub fn own_fspiop_url(&self) -> String {
        match self.fspiop.tls.listen {
            Some(listen) => format!("https://{listen}"),
            None => self.own_url(),
        }
    }

    pub fn switch_url(&self) -> String {
        if self.switch_url.is_empty() {
            format!("{}/switch", self.own_fspiop_url())
        } else {
            self.switch_url.clone()
        }
    }

    /// The tenant's FSPIOP base URLs: `endpoints`, else `endpoint`, else this
    /// node's own.
    pub fn tenant_endpoints(&self, tenant: &TenantSection) -> Vec<String> {
        if !tenant.endpoints.is_empty() {
            tenant.endpoints.clone()
        } else if !tenant.endpoint.is_empty() {
            vec![tenant.endpoint.clone()]
        } else {
            vec![format!("{}/fspiop/{}", self.own_fspiop_url(), tenant.id)]
        }
    }

    /// The tenants as the connectors know them.
    pub fn tenants(&self) -> Tenants {
        Tenants::new(self.tenants.iter().map(|t| Tenant {
            // Validated by `Config::validate_tenants`.
            id: TenantId::try_from(t.id.clone()).unwrap_or_else(|_| unreachable!("tenant ids are validated")),
            fsp_id: t.fsp_id.clone(),
            ilp_secret: t.ilp_secret.clone(),
            // Validated by `Config::validate_tenants`.
            fees: t.fees.as_ref().and_then(|fees| fees.rule().ok()).unwrap_or_default(),
        }))
    }
}

/// The most base URLs of one tenant (nodes serving it).
const TENANT_ENDPOINTS_MAX: usize = 64;

/// Checks that `value` is an absolute http(s) URL with a host.
fn check_url(value: &str) -> Result<(), String> {
    match reqwest::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(()),
        Ok(_) => Err(format!("{value:?} is not an http(s) URL")),
        Err(error) => Err(format!("{value:?} is not a URL: {error}")),
    }
}

/// Values given on the command line, layered last.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterOverrides>,
}

/// Command-line overrides of the `cluster` section.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterOverrides {
    pub join: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use actors::model::Amount;

    #[test]
    fn demo_config_is_valid_and_seeds_ten_parties() {
        let config = Config::demo();
        assert!(config.validate().is_ok());
        assert_eq!(config.tenants[0].demo_parties[0].identifier, "27710000001");
        assert_eq!(config.tenants[1].demo_parties[4].identifier, "27710000010");
    }

    #[test]
    fn validation_names_the_bad_key() {
        let mut config = Config::demo();
        config.raft.election_timeout_max_ms = 1;
        let error = config.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("raft.election_timeout_max_ms"), "{error}");
    }

    #[test]
    fn tenant_endpoints_fall_back_to_endpoint_then_to_the_node_itself() {
        let mut config = Config::demo();
        let own = format!("http://{}/fspiop/bluebank", config.listen);
        assert_eq!(config.tenant_endpoints(&config.tenants[0]), [own]);
        config.tenants[0].endpoint = "http://10.0.0.1:8080/fspiop/bluebank".into();
        assert_eq!(config.tenant_endpoints(&config.tenants[0]), ["http://10.0.0.1:8080/fspiop/bluebank"]);
        let nodes = [
            "http://10.0.0.2:8080/fspiop/bluebank".to_owned(),
            "http://10.0.0.3:8080/fspiop/bluebank".into(),
        ];
        config.tenants[0].endpoints = nodes.to_vec();
        assert_eq!(config.tenant_endpoints(&config.tenants[0]), nodes);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn bad_urls_are_refused_by_key() {
        let mut config = Config::demo();
        config.ams_url = "127.0.0.1:8090".into();
        let error = config.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("`ams_url`"), "{error}");
        config.ams_url = "http://127.0.0.1:8090".into();
        assert!(config.validate().is_ok());
        config.tenants[1].endpoints = vec!["http://127.0.0.1:8081/fspiop/greenbank".into(), "ftp://x".into()];
        let error = config.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("tenants[1].endpoints[1]"), "{error}");
    }

    #[test]
    fn the_sim_needs_each_tenants_node_urls() {
        let mut config = Config::demo();
        let error = config.validate_sim().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("tenants[0].endpoints"), "{error}");
        for tenant in &mut config.tenants {
            tenant.endpoints = vec![format!("http://127.0.0.1:8080/fspiop/{}", tenant.id)];
        }
        assert!(config.validate_sim().is_ok());
    }

    #[test]
    fn tls_settings_are_checked_by_key() {
        let mut config = Config::demo();
        config.fspiop.tls.cert = Some("server.pem".into());
        let error = config.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            error.contains("`fspiop.tls.cert`") && error.contains("without fspiop.tls.listen"),
            "{error}"
        );
        config.fspiop.tls.listen = Some(SocketAddr::from(([127, 0, 0, 1], 8443)));
        config.fspiop.tls.cert = None;
        let error = config.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("needs a certificate and its key"), "{error}");
        config.fspiop.tls = TlsSection::default();
        let files =
            CertKey { cert: "/nonexistent/bluebank.pem".into(), key: "/nonexistent/bluebank.key".into() };
        config.fspiop.tls.client_certs.insert("bluebank".into(), files);
        let error = config.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("`fspiop.tls.client_certs.greenbank`"), "{error}");
        for fsp in ["greenbank", "switch"] {
            let files = CertKey { cert: "/nonexistent/c.pem".into(), key: "/nonexistent/c.key".into() };
            config.fspiop.tls.client_certs.insert(fsp.into(), files);
        }
        let error = config.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("/nonexistent/"), "{error}");
    }

    #[test]
    fn with_a_tls_listener_the_tenants_and_the_simulator_are_reached_over_https() {
        let mut config = Config::demo();
        config.fspiop.tls.listen = Some(SocketAddr::from(([127, 0, 0, 1], 8443)));
        assert_eq!(config.switch_url(), "https://127.0.0.1:8443/switch");
        assert_eq!(config.tenant_endpoints(&config.tenants[1]), ["https://127.0.0.1:8443/fspiop/greenbank"]);
    }

    #[test]
    fn fee_rules_are_checked_by_tenant() {
        let mut config = Config::demo();
        let fees = |percent: &str, fixed: &[(&str, &str)]| FeeSection {
            percent: percent.into(),
            fixed: fixed.iter().map(|(c, v)| ((*c).to_owned(), (*v).to_owned())).collect(),
            account: default_fee_account(),
        };
        for (bad, reason) in [
            (fees("1,5", &[]), "not a decimal"),
            (fees("-1", &[]), "negative"),
            (fees("100", &[]), "below 100"),
            (fees("1", &[("XYZ", "1")]), "ISO 4217"),
            (fees("1", &[("USD", "x")]), "fixed.USD"),
        ] {
            config.tenants[1].fees = Some(bad);
            let error = config.validate().err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains("tenants[1].fees") && error.contains(reason), "{error}");
        }
        config.tenants[1].fees = Some(fees("1.5", &[("USD", "0.25")]));
        assert!(config.validate().is_ok());
        let tenants = config.tenants();
        let rule = &tenants.find("greenbank").expect("greenbank").fees;
        assert_eq!(rule.fee(&Amount::parse_positive("100", "USD").expect("amount")).to_string(), "1.75");
    }

    #[test]
    fn flags_override_file_and_environment() {
        let overrides = Overrides { shard_count: Some(3), ..Overrides::default() };
        let config = Config::load(Config::demo(), None, &overrides).map(|c| c.shard_count);
        assert_eq!(config.ok(), Some(3));
    }
}
