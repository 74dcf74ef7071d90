//! What the expert is told: the revision rules of ReDiff Stage II in our own
//! words, and the draft with its image.

use base64::Engine as _;
use rediff_api::ExpertRequest;
use serde_json::Value;

use crate::chat::chat_body;

use crate::options::{ImageMode, LengthUnit, OpenAiOptions};

/// The revision rules shared by both system prompts; `{unit}` is the
/// length unit a correction keeps.
const RULES: &str = "If nothing is wrong, answer with the single word: right. \
Otherwise answer with a JSON list of corrections and nothing else, for example \
[{\"org\": \"red circle\", \"target\": \"blue square\"}]. \
Rules: `org` is copied exactly from the draft and occurs in it only once (add neighbouring words \
until it does); `target` replaces it and has the same number of {unit}; keep every correction as \
small and local as possible; never rewrite parts that are right; do not add or remove information \
beyond the replaced span.";

/// What the expert is asked to do when it sees the image.
const TASK: &str = "You check captions that an image-captioning model wrote. \
You get the image, the question, a reference answer written by a person, and the model's draft. \
Find the parts of the draft that are wrong: objects, attributes, counts or positions that the image \
does not show, repeated phrases, and broken grammar. ";

/// What the expert is asked to do without the image (`image = "none"`):
/// the reference answer stands in for it.
const TASK_TEXT_ONLY: &str = "You check captions that an image-captioning model wrote. \
You do not see the image; you get the question, a reference answer written by a person who saw it, \
and the model's draft. Find the parts of the draft that are wrong: objects, attributes, counts or \
positions that contradict the reference answer, repeated phrases, and broken grammar. ";

/// The system prompt for `options`: section 4 of the specification,
/// restated (or the user's own `system_prompt`).
pub fn system_prompt(options: &OpenAiOptions) -> String {
    if let Some(own) = &options.system_prompt {
        return own.clone();
    }
    let task = match options.image {
        ImageMode::DataUrl => TASK,
        ImageMode::None => TASK_TEXT_ONLY,
    };
    let unit = match options.length_unit {
        LengthUnit::Words => "words",
        LengthUnit::Tokens => "tokens",
    };
    format!("{task}{}", RULES.replace("{unit}", unit))
}

/// `data:<mime>;base64,<bytes>` for an image file, read as it is on disk.
pub fn image_data_url(path: &std::path::Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("image {}: {e}", path.display()))?;
    Ok(data_url(&bytes, path))
}

/// `data:<mime>;base64,<bytes>` for an image's `bytes` (read already), the
/// type named by `path`'s extension.
pub fn data_url(bytes: &[u8], path: &std::path::Path) -> String {
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
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The chat-completions request body for one draft.
pub fn request_body(options: &OpenAiOptions, request: &ExpertRequest) -> Result<Value, String> {
    let text = format!(
        "Question: {}\nReference answer: {}\nDraft: {}",
        request.question, request.reference, request.draft
    );
    let image = match options.image {
        ImageMode::DataUrl => Some(image_data_url(&request.image)?),
        ImageMode::None => None,
    };
    Ok(chat_body(
        options,
        &system_prompt(options),
        &text,
        image.as_deref(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(extra: Value) -> Value {
        let mut v = json!({ "base_url": "http://h/v1", "model": "m" });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let options: OpenAiOptions = serde_json::from_value(v).unwrap();
        let request = ExpertRequest::new("s", "/nonexistent/image.png", "q", "r", "d");
        request_body(&options, &request).unwrap()
    }

    #[test]
    fn the_cap_goes_in_the_chosen_fields() {
        let b = body(json!({ "image": "none" }));
        assert_eq!(b["max_tokens"], 1024);
        assert!(b.get("max_completion_tokens").is_none());
        let b = body(
            json!({ "image": "none", "token_field": "max_completion_tokens", "max_tokens": 64 }),
        );
        assert_eq!(b["max_completion_tokens"], 64);
        assert!(b.get("max_tokens").is_none());
        let b = body(json!({ "image": "none", "token_field": "both", "stop": ["\n\n\n"] }));
        assert_eq!(
            (b["max_tokens"].clone(), b["max_completion_tokens"].clone()),
            (json!(1024), json!(1024))
        );
        assert_eq!(b["stop"], json!(["\n\n\n"]));
    }

    #[test]
    fn text_only_sends_a_plain_string_and_reads_no_image() {
        // The image does not exist: text-only mode never reads it.
        let b = body(json!({ "image": "none" }));
        assert_eq!(
            b["messages"][1]["content"],
            "Question: q\nReference answer: r\nDraft: d"
        );
        let system = b["messages"][0]["content"].as_str().unwrap();
        assert!(system.contains("You do not see the image"), "{system}");
        assert!(!b.to_string().contains("image_url"));
    }

    #[test]
    fn the_prompts_end_their_sentences() {
        for image in ["none", "data_url"] {
            let options: OpenAiOptions = serde_json::from_value(
                json!({ "base_url": "http://h/v1", "model": "m", "image": image }),
            )
            .unwrap();
            let p = system_prompt(&options);
            assert!(p.contains("single word: right. Otherwise"), "{p}");
            assert!(p.contains("same number of words"), "{p}");
            assert!(!p.contains("  "), "{p}");
        }
    }

    #[test]
    fn the_length_unit_and_an_own_prompt_are_options() {
        let b = body(json!({ "image": "none", "length_unit": "tokens" }));
        let system = b["messages"][0]["content"].as_str().unwrap();
        assert!(system.contains("same number of tokens"), "{system}");
        let b = body(json!({ "image": "none", "system_prompt": "# ROLE: mine" }));
        assert_eq!(b["messages"][0]["content"], "# ROLE: mine");
    }
}
