//! The tenants (DFSPs) a node serves and what connectors need of each.

use std::collections::BTreeMap;

use actors::model::TenantId;

/// What the connectors know of one tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    /// The tenant's DFSP id in the scheme (FSPIOP-Source of its messages).
    pub fsp_id: String,
    /// The secret the payee side derives ILP fulfilments with.
    pub ilp_secret: String,
    /// What it charges as payee.
    pub fees: crate::fees::FeeRule,
}

/// All tenants of a node, by tenant id and by FSP id.
#[derive(Debug, Clone, Default)]
pub struct Tenants {
    by_id: BTreeMap<TenantId, Tenant>,
}

impl Tenants {
    pub fn new(tenants: impl IntoIterator<Item = Tenant>) -> Self {
        Tenants { by_id: tenants.into_iter().map(|t| (t.id.clone(), t)).collect() }
    }

    pub fn get(&self, id: &TenantId) -> Option<&Tenant> {
        self.by_id.get(id)
    }

    /// Looks a tenant up by the textual id of a header or path.
    pub fn find(&self, id: &str) -> Option<&Tenant> {
        self.by_id.values().find(|t| t.id.as_str() == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tenant> {
        self.by_id.values()
    }
}
