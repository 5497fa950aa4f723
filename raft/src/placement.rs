//! Which nodes hold a replica of which shard, and which of them should lead.
//!
//! Placement is a pure function of the cluster's members (id, zone) and the
//! replication factor, so every node computes the same answer from the same
//! configuration, and the metadata group records it. Replicas of a shard go to
//! distinct zones whenever there are as many zones as replicas (losing one
//! zone then loses at most one replica of any shard); within a zone, shards
//! take its nodes in turn. The first replica is the shard's preferred leader,
//! and those rotate over zones and nodes so leadership is balanced.
//!
//! A node joining a running cluster does not reshuffle it: [`Placement::with_member`]
//! hands the newcomer its fair share of replicas and of preferred leaders,
//! each taken from the busiest node that can give one up without putting two
//! replicas of a shard in one zone, and changes at most one replica per shard.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use actors::command::Topology;
use actors::model::{NodeId, ShardId};

pub use actors::command::Member;

/// Why a placement cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor {factor} needs at least {factor} members, the cluster has {members}")]
    TooFewMembers { factor: usize, members: usize },
    #[error("replication factor must be at least 1")]
    ZeroFactor,
    #[error("member {0} appears twice")]
    DuplicateMember(NodeId),
    #[error("the recorded topology places {shard} on {node}, which is not a member")]
    UnknownReplica { shard: ShardId, node: NodeId },
}

/// The replicas of every group, preferred leader first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Counts the changes since the cluster's first placement (0); a node
    /// follows a recorded placement only when it is newer than its own.
    pub version: u64,
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
        Ok(Placement { version: 0, members, replication_factor, replicas })
    }

    /// The placement a recorded topology describes.
    pub fn from_topology(topology: &Topology) -> Result<Self, PlacementError> {
        let mut members = topology.members.clone();
        members.sort_by_key(|m| m.id);
        if let Some(pair) = members.windows(2).find(|pair| pair[0].id == pair[1].id) {
            return Err(PlacementError::DuplicateMember(pair[0].id));
        }
        let mut replicas = BTreeMap::new();
        for (shard, nodes) in &topology.replicas {
            let nodes: Vec<NodeId> = nodes.iter().copied().map(NodeId).collect();
            if let Some(node) = nodes.iter().find(|n| !members.iter().any(|m| m.id == **n)) {
                return Err(PlacementError::UnknownReplica { shard: ShardId(*shard), node: *node });
            }
            replicas.insert(ShardId(*shard), nodes);
        }
        Ok(Placement {
            version: topology.version,
            members,
            replication_factor: topology.replication_factor as usize,
            replicas,
        })
    }

    /// This placement with `member` added and given its share: about
    /// `replicas / members` replicas and `groups / members` preferred
    /// leaderships. Each is moved from the node holding the most (ties: the
    /// lowest shard id, then the lowest node id), only where the shard's
    /// replicas stay in as many distinct zones as before, and at most one
    /// replica of any shard moves. The newcomer takes the place (and rank) of
    /// the replica it replaces, so taking a preferred leader's place makes it
    /// the preferred leader.
    pub fn with_member(&self, member: Member) -> Result<Self, PlacementError> {
        if self.member(member.id).is_some() {
            return Err(PlacementError::DuplicateMember(member.id));
        }
        let mut next = self.clone();
        next.version += 1;
        let new = member.id;
        let zone_of = |placement: &Placement, id: NodeId| placement.member(id).map(|m| m.zone.clone());
        next.members.push(member);
        next.members.sort_by_key(|m| m.id);
        let members = next.members.len();
        let groups = next.replicas.len();
        let replica_share = groups * self.replication_factor / members;
        let leader_share = groups / members;

        let (mut held, mut leads) = (0usize, 0usize);
        while held < replica_share {
            let (load, lead_load) = (next.load(), next.lead_load());
            // The best (shard, position) whose node gives its replica to the
            // newcomer: a move must leave the giver at least as loaded as the
            // newcomer, and the shard's replicas in as many zones.
            let mut best: Option<((bool, usize, usize), ShardId, usize)> = None;
            for (shard, nodes) in &next.replicas {
                if nodes.contains(&new) {
                    continue;
                }
                let zones_before: BTreeSet<Option<String>> =
                    nodes.iter().map(|n| zone_of(&next, *n)).collect();
                for (position, node) in nodes.iter().enumerate() {
                    if load[node] < held + 2 {
                        continue;
                    }
                    let mut zones_after: BTreeSet<Option<String>> =
                        nodes.iter().filter(|n| *n != node).map(|n| zone_of(&next, *n)).collect();
                    zones_after.insert(zone_of(&next, new));
                    if zones_after.len() < zones_before.len() {
                        continue;
                    }
                    // A preferred leadership moves while the newcomer has
                    // fewer than its share and the giver more than the
                    // newcomer would; such moves rank first.
                    let leading = position == 0;
                    if leading && !(leads < leader_share && lead_load[node] >= leads + 2) {
                        continue;
                    }
                    let rank = (leading, if leading { lead_load[node] } else { 0 }, load[node]);
                    if best.as_ref().is_none_or(|(best_rank, _, _)| rank > *best_rank) {
                        best = Some((rank, *shard, position));
                    }
                }
            }
            let Some(((leading, _, _), shard, position)) = best else { break };
            if let Some(nodes) = next.replicas.get_mut(&shard) {
                nodes[position] = new;
            }
            held += 1;
            leads += usize::from(leading);
        }
        Ok(next)
    }

    /// Replicas held, by node (every member, zero included).
    fn load(&self) -> BTreeMap<NodeId, usize> {
        let mut load: BTreeMap<NodeId, usize> = self.members.iter().map(|m| (m.id, 0)).collect();
        for node in self.replicas.values().flatten() {
            *load.entry(*node).or_default() += 1;
        }
        load
    }

    /// Preferred leaderships, by node (every member, zero included).
    fn lead_load(&self) -> BTreeMap<NodeId, usize> {
        let mut load: BTreeMap<NodeId, usize> = self.members.iter().map(|m| (m.id, 0)).collect();
        for node in self.replicas.values().filter_map(|nodes| nodes.first()) {
            *load.entry(*node).or_default() += 1;
        }
        load
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
            version: self.version,
            shard_count: self.replicas.len().saturating_sub(1) as u32,
            replication_factor: self.replication_factor as u32,
            members: self.members.clone(),
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
    fn a_joining_node_gets_its_share_of_replicas_and_leaders_and_zones_stay_spread() {
        let members = [member(1, "a"), member(2, "b"), member(3, "c")];
        let before = Placement::new(&members, 3, 8).expect("placement");
        let after = before.with_member(member(4, "d")).expect("joins");
        let (load, leads) = (after.load(), after.lead_load());
        // 9 groups x 3 replicas over 4 nodes: 6 for the newcomer; 9 / 4 = 2 leaderships.
        assert_eq!(load[&NodeId(4)], 6, "{after:?}");
        assert_eq!(leads[&NodeId(4)], 2, "{after:?}");
        assert!(load.values().all(|held| (6..=7).contains(held)), "{load:?}");
        assert!(leads.values().all(|led| (2..=3).contains(led)), "{leads:?}");
        for (shard, nodes) in &after.replicas {
            let zones: BTreeSet<String> = nodes.iter().map(|n| zone_of(&after, *n)).collect();
            assert_eq!(zones.len(), 3, "{shard}: {nodes:?}");
            // At most one replica of a shard moved.
            let moved = nodes.iter().zip(before.replicas(*shard)).filter(|(a, b)| a != b).count();
            assert!(moved <= 1, "{shard}: {:?} -> {nodes:?}", before.replicas(*shard));
        }
        // Round trip through the recorded form.
        assert_eq!(Placement::from_topology(&after.topology()), Ok(after.clone()));
        assert_eq!(after.with_member(member(4, "d")), Err(PlacementError::DuplicateMember(NodeId(4))));
    }

    #[test]
    fn a_second_node_in_a_zone_shares_that_zone_s_replicas() {
        let members = [member(1, "a"), member(2, "b"), member(3, "c")];
        let before = Placement::new(&members, 3, 8).expect("placement");
        let after = before.with_member(member(4, "a")).expect("joins");
        let (load, leads) = (after.load(), after.lead_load());
        // Only node 1 (zone a) can make way without two replicas in one zone:
        // its 9 replicas are split 5 / 4 and its 3 leaderships 2 / 1.
        assert_eq!((load[&NodeId(1)], load[&NodeId(4)]), (5, 4), "{after:?}");
        assert_eq!((leads[&NodeId(1)], leads[&NodeId(4)]), (2, 1), "{after:?}");
        for nodes in after.replicas.values() {
            let zones: BTreeSet<String> = nodes.iter().map(|n| zone_of(&after, *n)).collect();
            assert_eq!(zones.len(), 3, "{nodes:?}");
        }
    }

    #[test]
    fn a_node_in_a_new_zone_replaces_the_busiest_zone() {
        // Two nodes in zone a, one in b and c: the newcomer in zone d may take
        // any replica, and zones never get fewer.
        let members = [member(1, "a"), member(2, "a"), member(3, "b"), member(5, "c")];
        let before = Placement::new(&members, 3, 16).expect("placement");
        let after = before.with_member(member(6, "d")).expect("joins");
        assert_eq!(after.load()[&NodeId(6)], 17 * 3 / 5);
        for (shard, nodes) in &after.replicas {
            let zones_before: BTreeSet<String> =
                before.replicas(*shard).iter().map(|n| zone_of(&before, *n)).collect();
            let zones_after: BTreeSet<String> = nodes.iter().map(|n| zone_of(&after, *n)).collect();
            assert!(zones_after.len() >= zones_before.len(), "{shard}");
        }
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
