//! Tool output as MCP content blocks.

use base64::Engine;
use rmcp::model::{ContentBlock, ResourceContents};

use crate::sandbox::{Content, ResourceBody};

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The MCP form of one block (checked by the sandbox already).
pub(super) fn block(content: Content) -> Result<ContentBlock, String> {
    Ok(match content {
        Content::Text(t) | Content::Json(t) => ContentBlock::text(t),
        Content::Image { data, mime_type } => ContentBlock::image(b64(&data), mime_type),
        Content::Audio { data, mime_type } => ContentBlock::audio(b64(&data), mime_type),
        Content::Resource {
            uri,
            mime_type,
            body,
        } => ContentBlock::resource(match body {
            ResourceBody::Text(text) => ResourceContents::TextResourceContents {
                uri,
                mime_type,
                text,
                meta: None,
            },
            ResourceBody::Blob(data) => ResourceContents::BlobResourceContents {
                uri,
                mime_type,
                blob: b64(&data),
                meta: None,
            },
        }),
        Content::ResourceLink(link) => {
            let mut value = serde_json::json!({
                "type": "resource_link",
                "uri": link.uri,
                "name": link.name,
            });
            if let Some(object) = value.as_object_mut() {
                for (key, field) in [
                    ("title", link.title.map(serde_json::Value::from)),
                    ("description", link.description.map(serde_json::Value::from)),
                    ("mimeType", link.mime_type.map(serde_json::Value::from)),
                    ("size", link.size.map(serde_json::Value::from)),
                ] {
                    if let Some(field) = field {
                        object.insert(key.into(), field);
                    }
                }
            }
            serde_json::from_value(value)
                .map_err(|e| format!("a resource link is not valid: {e}"))?
        }
    })
}
