//! `payhub local-cluster`: the configuration files of a cluster on one
//! machine (each node on its own loopback address, zones assigned in turn),
//! and of the simulated outside world it pays through (`payhub sim`: the
//! switch simulator and the demo tenants' AMS). `deploy/local/cluster.sh`
//! and the multi-process tests start processes from these files.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::config::{ClusterSection, Config, MemberSection};

#[derive(Debug, Clone, Args)]
pub struct LocalCluster {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u8,
    /// Number of zones; node i is in zone (i - 1) mod zones.
    #[arg(long, default_value_t = 3)]
    pub zones: u8,
    /// Replicas of each shard (at most the number of nodes).
    #[arg(long, default_value_t = 3)]
    pub replication_factor: usize,
    /// Transaction shards.
    #[arg(long, default_value_t = 8)]
    pub shards: u32,
    /// Address of node 1; node i listens on the i-th address from it.
    #[arg(long, default_value = "127.0.0.11")]
    pub first_address: Ipv4Addr,
    /// HTTP port of every node.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// gRPC port of every node.
    #[arg(long, default_value_t = 9080)]
    pub grpc_port: u16,
    /// HTTP address of the simulated outside world (switch and AMS).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub sim: SocketAddr,
    /// Raft election timeout (minimum; the maximum is twice it). The
    /// heartbeat is a third of it, and openraft gives each AppendEntries
    /// (a batch, with the follower's fsync) one heartbeat interval; on a
    /// saturated machine 250 ms is not enough (PERFORMANCE.md, change 18).
    #[arg(long, default_value_t = 1_500)]
    pub election_timeout_ms: u64,
    /// Raft log entries between snapshots.
    #[arg(long, default_value_t = 20_000)]
    pub snapshot_every: u64,
    /// The simulated switch delivers each message to a DFSP's next node in
    /// turn, as a load balancer in front of the nodes would
    /// (`simulator_spread`), instead of to the node that answered last.
    #[arg(long)]
    pub spread: bool,
    /// How many of the nodes (the last ones) join the cluster once it runs
    /// (`cluster.join` in their configuration) instead of starting it.
    #[arg(long, default_value_t = 0)]
    pub joining: u8,
    /// Where to write `sim.toml`, `node-<i>.toml` and the data directories.
    #[arg(long, default_value = "deploy/local/data")]
    pub dir: PathBuf,
}

fn zone_name(index: u8) -> String {
    format!("zone-{}", char::from(b'a' + index % 26))
}

impl LocalCluster {
    /// Writes the configuration files; returns their paths (sim first).
    pub fn write(&self) -> anyhow::Result<Vec<PathBuf>> {
        anyhow::ensure!(self.nodes >= 1 && self.zones >= 1, "--nodes and --zones must be at least 1");
        anyhow::ensure!(
            self.joining < self.nodes,
            "--joining must leave at least one node to start the cluster"
        );
        let founders = u64::from(self.nodes - self.joining);
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let dir = std::path::absolute(&self.dir)?;
        let first = u32::from(self.first_address);
        let members: Vec<MemberSection> = (0..self.nodes)
            .map(|i| {
                let address = Ipv4Addr::from(first + u32::from(i));
                MemberSection {
                    id: u64::from(i) + 1,
                    zone: zone_name(i % self.zones),
                    grpc: format!("{address}:{}", self.grpc_port),
                    http: format!("{address}:{}", self.http_port),
                }
            })
            .collect();
        let demo = Config::demo();
        let mut tenants = demo.tenants.clone();
        for tenant in &mut tenants {
            tenant.endpoints =
                members.iter().map(|m| format!("http://{}/fspiop/{}", m.http, tenant.id)).collect();
        }
        let sim = Config {
            listen: self.sim,
            data_dir: dir.join("sim"),
            switch_simulator: true,
            simulator_spread: self.spread,
            seed_demo_parties: true,
            tenants: tenants.clone(),
            ..demo.clone()
        };
        let mut written = vec![dir.join("sim.toml")];
        std::fs::write(&written[0], toml::to_string(&sim)?)?;
        for member in &members {
            let mut raft = demo.raft.clone();
            raft.election_timeout_min_ms = self.election_timeout_ms;
            raft.election_timeout_max_ms = self.election_timeout_ms * 2;
            raft.heartbeat_interval_ms = (self.election_timeout_ms / 3).max(1);
            raft.snapshot_log_entries_max = self.snapshot_every;
            // Small batches, so a catching-up follower's append fits the
            // heartbeat interval even on a loaded machine.
            raft.append_entries_max = 64;
            let node = Config {
                node_id: member.id,
                zone: member.zone.clone(),
                listen: member.http.parse()?,
                grpc_listen: member.grpc.parse()?,
                data_dir: dir.join(format!("node-{}", member.id)),
                shard_count: self.shards,
                raft,
                cluster: ClusterSection {
                    replication_factor: self.replication_factor.min(founders as usize),
                    // The founders start the cluster with each other; a
                    // joining node finds it through them.
                    members: members.iter().filter(|m| m.id <= founders.max(member.id)).cloned().collect(),
                    join: member.id > founders,
                },
                switch_url: format!("http://{}/switch", self.sim),
                ams_url: format!("http://{}", self.sim),
                switch_simulator: false,
                seed_demo_parties: false,
                tenants: tenants.clone(),
                ..demo.clone()
            };
            node.validate()?;
            let path = dir.join(format!("node-{}.toml", member.id));
            std::fs::write(&path, toml::to_string(&node)?)?;
            written.push(path);
        }
        Ok(written)
    }
}
