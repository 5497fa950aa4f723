//! Which nodes hold a replica of which shard, and which of them should lead.
//!
//! Placement is a pure function of the cluster's members (id, zone) and the
//! replication factor, so every node computes the same answer from the same
//! configuration, and the metadata group records it. Replicas of a shard go to
//! distinct zones whenever there are as many zones as replicas (losing one
//! zone then loses at most one replica of any shard); within a zone, shards
//! take its nodes in turn. The first replica is the shard's preferred leader,
//! and those rotate over zones and nodes so leadership is balanced.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use actors::model::{NodeId, ShardId};

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub zone: String,
    /// `host:port` of the node's gRPC server (Raft and forwarding).
    pub grpc: String,
    /// `host:port` of the node's HTTP server (channel API, FSPIOP, admin).
    pub http: String,
}

/// Why a placement cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor {factor} needs at least {factor} members, the cluster has {members}")]
    TooFewMembers { factor: usize, members: usize },
    #[error("replication factor must be at least 1")]
    ZeroFactor,
    #[error("member {0} appears twice")]
    DuplicateMember(NodeId),
}

/// The replicas of every group, preferred leader first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub members: Vec<Member>,
    pub replication_factor: usize,
    pub replicas: BTreeMap<ShardId, Vec<NodeId>>,
}

impl Placement {
    /// Places the metadata group and `shard_count` transaction shards.
    pub fn new(
        members: &[Member],
        replication_factor: usize,
        shard_count: u32,
    ) -> Result<Self, PlacementError> {
        if replication_factor == 0 {
            return Err(PlacementError::ZeroFactor);
        }
        if members.len() < replication_factor {
            return Err(PlacementError::TooFewMembers { factor: replication_factor, members: members.len() });
        }
        let mut members = members.to_vec();
        members.sort_by_key(|m| m.id);
        if let Some(pair) = members.windows(2).find(|pair| pair[0].id == pair[1].id) {
            return Err(PlacementError::DuplicateMember(pair[0].id));
        }
        // Zones in name order, each with its nodes in id order.
        let mut zones: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
        for member in &members {
            zones.entry(member.zone.as_str()).or_default().push(member.id);
        }
        let zones: Vec<Vec<NodeId>> = zones.into_values().collect();
        let mut next_in_zone = vec![0usize; zones.len()];
        let mut replicas = BTreeMap::new();
        for shard in 0..=shard_count {
            let mut chosen: Vec<NodeId> = Vec::with_capacity(replication_factor);
            // Walk the zones round-robin from a start that rotates with the
            // shard, taking each zone's next node, until enough distinct
            // nodes are chosen (zones are revisited only when there are fewer
            // zones than replicas).
            let start = shard as usize % zones.len();
            let mut step = 0;
            while chosen.len() < replication_factor {
                let zone = (start + step) % zones.len();
                step += 1;
                let nodes = &zones[zone];
                let candidates = nodes.len();
                for offset in 0..candidates {
                    let node = nodes[(next_in_zone[zone] + offset) % candidates];
                    if !chosen.contains(&node) {
                        chosen.push(node);
                        next_in_zone[zone] = (next_in_zone[zone] + offset + 1) % candidates;
                        break;
                    }
                }
            }
            replicas.insert(ShardId(shard), chosen);
        }
        Ok(Placement { members, replication_factor, replicas })
    }

    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The replicas of `shard`, preferred leader first (empty for an unknown shard).
    pub fn replicas(&self, shard: ShardId) -> &[NodeId] {
        self.replicas.get(&shard).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The shards `node` holds a replica of, the metadata group included.
    pub fn shards_of(&self, node: NodeId) -> Vec<ShardId> {
        self.replicas.iter().filter(|(_, nodes)| nodes.contains(&node)).map(|(shard, _)| *shard).collect()
    }

    /// The placement as the metadata group records it.
    pub fn topology(&self) -> actors::command::Topology {
        actors::command::Topology {
            shard_count: self.replicas.len().saturating_sub(1) as u32,
            replication_factor: self.replication_factor as u32,
            replicas: self
                .replicas
                .iter()
                .map(|(shard, nodes)| (shard.0, nodes.iter().map(|n| n.0).collect()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn member(id: u64, zone: &str) -> Member {
        Member { id: NodeId(id), zone: zone.into(), grpc: format!("127.0.0.{id}:9000"), http: String::new() }
    }

    fn zone_of(placement: &Placement, node: NodeId) -> String {
        placement.member(node).map(|m| m.zone.clone()).unwrap_or_default()
    }

    #[test]
    fn three_zones_three_replicas_one_per_zone_and_leaders_rotate() {
        let members = [member(1, "a"), member(2, "b"), member(3, "c")];
        let placement = Placement::new(&members, 3, 8).expect("placement");
        let mut leaders = BTreeMap::<NodeId, usize>::new();
        for (shard, replicas) in &placement.replicas {
            let zones: BTreeSet<String> = replicas.iter().map(|n| zone_of(&placement, *n)).collect();
            assert_eq!(zones.len(), 3, "{shard} has replicas {replicas:?}");
            if shard.0 > 0 {
                *leaders.entry(replicas[0]).or_default() += 1;
            }
        }
        // 8 shards over 3 nodes: 3, 3, 2.
        assert!(leaders.values().all(|count| (2..=3).contains(count)), "{leaders:?}");
    }

    #[test]
    fn losing_a_zone_of_two_nodes_loses_one_replica_per_shard() {
        let members = [member(1, "a"), member(2, "a"), member(3, "b"), member(4, "b"), member(5, "c")];
        let placement = Placement::new(&members, 3, 16).expect("placement");
        for (shard, replicas) in &placement.replicas {
            let in_a = replicas.iter().filter(|n| zone_of(&placement, **n) == "a").count();
            assert_eq!(in_a, 1, "{shard} has replicas {replicas:?}");
            let distinct: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(distinct.len(), 3);
        }
        // Both nodes of zone a hold some shards.
        assert!(!placement.shards_of(NodeId(1)).is_empty());
        assert!(!placement.shards_of(NodeId(2)).is_empty());
    }

    #[test]
    fn fewer_zones_than_replicas_still_places_distinct_nodes() {
        let members = [member(1, "a"), member(2, "a"), member(3, "a")];
        let placement = Placement::new(&members, 3, 4).expect("placement");
        for replicas in placement.replicas.values() {
            let distinct: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(distinct.len(), 3);
        }
    }

    #[test]
    fn same_members_in_any_order_give_the_same_placement() {
        let a = Placement::new(&[member(1, "a"), member(2, "b"), member(3, "c")], 3, 8);
        let b = Placement::new(&[member(3, "c"), member(1, "a"), member(2, "b")], 3, 8);
        assert_eq!(a, b);
    }

    #[test]
    fn impossible_placements_are_refused() {
        assert_eq!(
            Placement::new(&[member(1, "a")], 3, 8),
            Err(PlacementError::TooFewMembers { factor: 3, members: 1 })
        );
        assert_eq!(
            Placement::new(&[member(1, "a"), member(1, "b"), member(2, "c")], 2, 8),
            Err(PlacementError::DuplicateMember(NodeId(1)))
        );
    }
}
