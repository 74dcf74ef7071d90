//! What the expert is told: the revision rules of ReDiff Stage II in our own
//! words, and the draft with its image.

use base64::Engine as _;
use rediff_core::ExpertRequest;
use serde_json::{json, Value};

/// The system prompt: section 4 of the specification, restated.
pub const SYSTEM_PROMPT: &str = "You check captions that an image-captioning model wrote. \
You get the image, the question, a reference answer written by a person, and the model's draft. \
Find the parts of the draft that are wrong: objects, attributes, counts or positions that the image \
does not show, repeated phrases, and broken grammar. \
If nothing is wrong, answer with the single word: right \
Otherwise answer with a JSON list of corrections and nothing else, for example \
[{\"org\": \"red circle\", \"target\": \"blue square\"}]. \
Rules: `org` is copied exactly from the draft and occurs in it only once (add neighbouring words \
until it does); `target` replaces it and has the same number of words; keep every correction as \
small and local as possible; never rewrite parts that are right; do not add or remove information \
beyond the replaced span.";

/// `data:<mime>;base64,<bytes>` for an image file, read as it is on disk.
pub fn image_data_url(path: &std::path::Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("image {}: {e}", path.display()))?;
    let mime = match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        _ => "image/png",
    };
    Ok(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// The chat-completions request body for one draft.
pub fn request_body(
    model: &str,
    request: &ExpertRequest,
    temperature: Option<f64>,
    max_completion_tokens: Option<u32>,
) -> Result<Value, String> {
    let text = format!(
        "Question: {}\nReference answer: {}\nDraft: {}",
        request.question, request.reference, request.draft
    );
    let mut body = json!({
        "model": model,
        "messages": [
            { "role": "system", "content": SYSTEM_PROMPT },
            { "role": "user", "content": [
                { "type": "text", "text": text },
                { "type": "image_url", "image_url": { "url": image_data_url(&request.image)? } }
            ]}
        ]
    });
    if let Some(t) = temperature {
        body["temperature"] = json!(t);
    }
    if let Some(m) = max_completion_tokens {
        body["max_completion_tokens"] = json!(m);
    }
    Ok(body)
}
