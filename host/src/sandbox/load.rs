//! Loading a component: check what it imports, compile (through the cache),
//! pre-instantiate once, and validate what `describe` says.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::Sandbox;
use super::bindings::v2::airlock::tool::types as wit;
use super::bindings::{v1, v2};
use super::call::{self, Guest, Returned};
use super::error::{CallError, LoadError};
use super::limits::{Limits, LimitsError};
use super::output::{Annotations, ToolDescriptor};
use super::state::HostState;
use crate::delegate::DenyAll;

/// The only import namespace a tool may use.
const ALLOWED_IMPORT_PREFIX: &str = "airlock:tool/";
/// Most tools one component may offer.
const MAX_TOOLS: usize = 256;
/// Largest description or schema text accepted, in bytes.
const MAX_DESCRIPTOR_TEXT: usize = 64 * 1024;
/// Most bytes of descriptors (as the host holds them) one component may
/// describe; larger lists are refused before the host copies them.
const MAX_DESCRIBE_BYTES: usize = 4 * 1024 * 1024;

/// Checks compiled for one tool's arguments and structured output.
pub(crate) struct Validators {
    pub(crate) input: jsonschema::Validator,
    pub(crate) output: Option<jsonschema::Validator>,
}

/// A component prepared for instantiation, by the contract version it was built against.
pub(crate) enum Pre {
    /// `airlock:tool@0.1.0`.
    V1(v1::ToolComponentPre<HostState>),
    /// `airlock:tool@0.2.0`.
    V2(v2::ToolComponentPre<HostState>),
}

impl Pre {
    /// The contract version, as `major.minor.patch`.
    pub(crate) fn version(&self) -> &'static str {
        match self {
            Pre::V1(_) => "0.1.0",
            Pre::V2(_) => "0.2.0",
        }
    }
}

pub(crate) struct Inner {
    pub(crate) pre: Pre,
    pub(crate) tools: Vec<ToolDescriptor>,
    pub(crate) validators: HashMap<String, Validators>,
    digest: String,
    size: usize,
    imports: Vec<String>,
    max_memory_bytes: usize,
}

/// A checked, compiled and pre-instantiated component, ready to be called.
/// Cloning is cheap; clones share the compiled code.
#[derive(Clone)]
pub struct LoadedComponent {
    pub(crate) inner: Arc<Inner>,
    pub(crate) limits: Limits,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("digest", &self.inner.digest)
            .field("tools", &self.inner.tools.len())
            .field("limits", &self.limits)
            .finish()
    }
}

impl LoadedComponent {
    /// The tools it offers, in `describe` order.
    pub fn tools(&self) -> &[ToolDescriptor] {
        &self.inner.tools
    }

    /// The tool called `name`.
    pub fn tool(&self, name: &str) -> Option<&ToolDescriptor> {
        self.inner.tools.iter().find(|t| t.name == name)
    }

    /// SHA-256 of the component bytes, hex encoded.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// The `airlock:tool` contract version the component was built against.
    pub fn contract_version(&self) -> &'static str {
        self.inner.pre.version()
    }

    /// What the component imports.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// The limits each call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The same component with different per-call limits.
    pub fn with_limits(mut self, limits: Limits) -> Result<Self, LimitsError> {
        limits.validate_memory(self.inner.max_memory_bytes)?;
        self.limits = limits;
        Ok(self)
    }
}

fn check_header(wasm: &[u8]) -> Result<(), LoadError> {
    match wasm.get(0..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 0x01, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(LoadError::NotAComponent(
            "this is a core WebAssembly module; link it into a component with \
             `wasm-component-ld --wasi-adapter=none` (the SDK's .cargo/config.toml does this)"
                .into(),
        )),
        _ => Err(LoadError::NotAComponent(
            "the file does not start with the WebAssembly magic number".into(),
        )),
    }
}

impl Sandbox {
    /// Check, compile and prepare `wasm`, then run its `describe` and validate
    /// the result. The component gets default [`Limits`].
    pub async fn load(&self, wasm: &[u8]) -> Result<LoadedComponent, LoadError> {
        check_header(wasm)?;
        let digest = hex::encode(Sha256::digest(wasm));
        let engine = self.engine.clone();
        let bytes = wasm.to_vec();
        // Compiling is CPU-bound; keep it off the async workers.
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
            .await
            .map_err(|e| LoadError::Compile(e.to_string()))?
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;

        let component_type = component.component_type();
        let mut imports = Vec::new();
        for (name, _) in component_type.imports(&self.engine) {
            if !name.starts_with(ALLOWED_IMPORT_PREFIX) {
                return Err(LoadError::ForbiddenImport {
                    name: name.to_string(),
                });
            }
            imports.push(name.to_string());
        }
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        // The newest contract whose `tool` export the component has.
        let pre = match v2::ToolComponentPre::new(instance_pre.clone()) {
            Ok(pre) => Pre::V2(pre),
            Err(v2_error) => match v1::ToolComponentPre::new(instance_pre) {
                Ok(pre) => Pre::V1(pre),
                Err(_) => {
                    return Err(LoadError::Link(format!(
                        "the component does not export `airlock:tool/tool` of a contract \
                         this host runs (0.2.0 or 0.1.0): {v2_error:#}"
                    )));
                }
            },
        };

        let limits = Limits::default();
        let _permit = self.acquire(None).await.map_err(|_| LoadError::Busy)?;
        let state = HostState::new(None, Arc::new(DenyAll), limits);
        let returned = call::run(
            &self.engine,
            &pre,
            state,
            &limits,
            MAX_DESCRIBE_BYTES,
            Guest::Describe,
            &self.waiting,
        )
        .await
        .0
        .map_err(|e| match e {
            CallError::OutputTooLarge { .. } => LoadError::Describe(format!(
                "the tool descriptors are larger than {MAX_DESCRIBE_BYTES} bytes in all"
            )),
            e => LoadError::Describe(e.to_string()),
        })?;
        let Returned::Descriptors(descriptors) = returned else {
            return Err(LoadError::Describe("unexpected result".into()));
        };
        let (tools, validators) = validate_descriptors(descriptors)?;
        Ok(LoadedComponent {
            inner: Arc::new(Inner {
                pre,
                tools,
                validators,
                digest,
                size: wasm.len(),
                imports,
                max_memory_bytes: self.settings.max_memory_bytes,
            }),
            limits,
        })
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn schema(
    tool: &str,
    which: &str,
    text: &str,
) -> Result<(serde_json::Value, jsonschema::Validator), LoadError> {
    let invalid = |reason: String| LoadError::InvalidDescriptor {
        tool: tool.to_string(),
        reason,
    };
    if text.len() > MAX_DESCRIPTOR_TEXT {
        return Err(invalid(format!(
            "the {which} schema is {} bytes; the limit is {MAX_DESCRIPTOR_TEXT}",
            text.len()
        )));
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| invalid(format!("the {which} schema is not JSON: {e}")))?;
    if value.get("type").and_then(|t| t.as_str()) != Some("object") {
        return Err(invalid(format!(
            "the {which} schema must describe an object (`\"type\": \"object\"`)"
        )));
    }
    let validator = jsonschema::validator_for(&value).map_err(|e| {
        invalid(format!(
            "the {which} schema is not a valid JSON Schema: {e}"
        ))
    })?;
    Ok((value, validator))
}

type Checked = (Vec<ToolDescriptor>, HashMap<String, Validators>);

fn validate_descriptors(descriptors: Vec<wit::ToolDescriptor>) -> Result<Checked, LoadError> {
    if descriptors.is_empty() {
        return Err(LoadError::NoTools);
    }
    if descriptors.len() > MAX_TOOLS {
        return Err(LoadError::Describe(format!(
            "{} tools; the limit is {MAX_TOOLS}",
            descriptors.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut tools = Vec::with_capacity(descriptors.len());
    let mut validators = HashMap::new();
    for d in descriptors {
        if !valid_name(&d.name) {
            return Err(LoadError::InvalidDescriptor {
                tool: d.name.chars().take(80).collect(),
                reason: "a tool name is 1 to 64 characters from `A-Z a-z 0-9 _ - .`".into(),
            });
        }
        if !seen.insert(d.name.clone()) {
            return Err(LoadError::DuplicateTool(d.name));
        }
        if d.description.len() > MAX_DESCRIPTOR_TEXT {
            return Err(LoadError::InvalidDescriptor {
                tool: d.name,
                reason: format!("the description is longer than {MAX_DESCRIPTOR_TEXT} bytes"),
            });
        }
        let (input_schema, input) = schema(&d.name, "input", &d.input_schema)?;
        let (output_schema, output) = match &d.output_schema {
            Some(text) => {
                let (value, validator) = schema(&d.name, "output", text)?;
                (Some(value), Some(validator))
            }
            None => (None, None),
        };
        validators.insert(d.name.clone(), Validators { input, output });
        tools.push(ToolDescriptor {
            name: d.name,
            title: d.title,
            description: d.description,
            input_schema,
            output_schema,
            annotations: Annotations {
                read_only_hint: d.annotations.read_only_hint,
                destructive_hint: d.annotations.destructive_hint,
                idempotent_hint: d.annotations.idempotent_hint,
                open_world_hint: d.annotations.open_world_hint,
            },
        });
    }
    Ok((tools, validators))
}
