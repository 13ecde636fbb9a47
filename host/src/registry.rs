//! Per-tenant tool catalogs: which tools each tenant installed, from which
//! prepared component, with which scope requirements and limits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::config::{Config, ServiceMode};
use crate::envelope::{Delegation, DelegationMode};
use crate::sandbox::{LoadedComponent, Sandbox, ToolDescriptor};

/// Why the catalogs could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A component file could not be read.
    #[error("component `{name}`: cannot read {path}: {reason}")]
    Read {
        /// The component's name.
        name: String,
        /// Its path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A component was refused by the sandbox.
    #[error("component `{name}`: {reason}")]
    Load {
        /// The component's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The tenant's installation is inconsistent.
    #[error("tenant `{tenant}`: {reason}")]
    Tenant {
        /// The tenant.
        tenant: String,
        /// What is wrong.
        reason: String,
    },
}

/// One tool as a tenant installed it.
#[derive(Debug, Clone)]
pub struct InstalledTool {
    /// What the tool says about itself.
    pub descriptor: ToolDescriptor,
    /// The prepared component, with this tenant's limits.
    pub component: LoadedComponent,
    /// Scopes a caller needs to see and call it.
    pub scopes: BTreeSet<String>,
    /// The services its install grants, and their modes: a call's envelope
    /// carries exactly these.
    pub delegations: Vec<Delegation>,
}

/// The tools of one tenant.
#[derive(Debug)]
pub struct TenantCatalog {
    id: String,
    tools: Vec<InstalledTool>,
}

impl TenantCatalog {
    /// The tenant id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tools a caller with `scopes` may see, in installation order.
    pub fn visible<'a>(
        &'a self,
        scopes: &'a BTreeSet<String>,
    ) -> impl Iterator<Item = &'a InstalledTool> + 'a {
        self.tools.iter().filter(|t| t.scopes.is_subset(scopes))
    }

    /// The tool `name`, if a caller with `scopes` may call it. A hidden tool is
    /// indistinguishable from an unknown one.
    pub fn find(&self, name: &str, scopes: &BTreeSet<String>) -> Option<&InstalledTool> {
        self.tools
            .iter()
            .find(|t| t.descriptor.name == name && t.scopes.is_subset(scopes))
    }
}

/// Every tenant's catalog.
#[derive(Debug)]
pub struct Registry {
    tenants: BTreeMap<String, Arc<TenantCatalog>>,
}

impl Registry {
    /// Load every configured component once and build each tenant's catalog.
    pub async fn build(config: &Config, sandbox: &Sandbox) -> Result<Self, RegistryError> {
        let mut loaded = BTreeMap::new();
        for (name, path) in &config.components {
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|e| RegistryError::Read {
                    name: name.clone(),
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            let component = sandbox
                .load(&bytes)
                .await
                .map_err(|e| RegistryError::Load {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
            tracing::info!(component = %name, tools = component.tools().len(), digest = %component.digest(), "component loaded");
            loaded.insert(name.clone(), component);
        }
        let mut tenants = BTreeMap::new();
        for (id, tenant) in &config.tenants {
            let fail = |reason: String| RegistryError::Tenant {
                tenant: id.clone(),
                reason,
            };
            let mut tools: Vec<InstalledTool> = Vec::new();
            for install in &tenant.install {
                let component = loaded
                    .get(&install.component)
                    .ok_or_else(|| fail(format!("no component `{}`", install.component)))?
                    .clone()
                    .with_limits(install.limits)
                    .map_err(|e| fail(e.to_string()))?;
                for name in install.tool_scopes.keys() {
                    if component.tool(name).is_none() {
                        return Err(fail(format!(
                            "tool_scopes names `{name}`, which component `{}` does not offer",
                            install.component
                        )));
                    }
                }
                let delegations: Vec<Delegation> = install
                    .services
                    .iter()
                    .filter_map(|name| {
                        let service = tenant.services.get(name)?;
                        Some(Delegation {
                            service: name.clone(),
                            mode: match service.mode {
                                ServiceMode::Service(_) => DelegationMode::Service,
                                ServiceMode::OnBehalfOf(_) => DelegationMode::OnBehalfOf,
                                ServiceMode::UserToken { .. } => DelegationMode::UserToken,
                            },
                        })
                    })
                    .collect();
                for descriptor in component.tools() {
                    if tools.iter().any(|t| t.descriptor.name == descriptor.name) {
                        return Err(fail(format!(
                            "two installed components offer a tool named `{}`",
                            descriptor.name
                        )));
                    }
                    let mut scopes: BTreeSet<String> = install.scopes.iter().cloned().collect();
                    if let Some(extra) = install.tool_scopes.get(&descriptor.name) {
                        scopes.extend(extra.iter().cloned());
                    }
                    tools.push(InstalledTool {
                        descriptor: descriptor.clone(),
                        component: component.clone(),
                        scopes,
                        delegations: delegations.clone(),
                    });
                }
            }
            tenants.insert(
                id.clone(),
                Arc::new(TenantCatalog {
                    id: id.clone(),
                    tools,
                }),
            );
        }
        Ok(Registry { tenants })
    }

    /// The catalog of `tenant`.
    pub fn tenant(&self, tenant: &str) -> Option<Arc<TenantCatalog>> {
        self.tenants.get(tenant).cloned()
    }
}
